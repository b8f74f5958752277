/** A kubeconfig for the fake API server: one cluster, one user with a bearer token, as kubectl and client libraries read it. */
export function fakeKubeconfig(server: string, token: string, ca?: string): string {
  const trust = ca ? `\n    certificate-authority-data: ${Buffer.from(ca).toString("base64")}` : "";
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: fake\n  cluster:\n    server: ${server}${trust}`,
    "users:",
    `- name: fake-user\n  user:\n    token: ${token}`,
    "contexts:",
    "- name: fake\n  context:\n    cluster: fake\n    user: fake-user",
    "current-context: fake",
    "",
  ].join("\n");
}

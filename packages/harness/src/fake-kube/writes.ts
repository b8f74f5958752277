/**
 * Writes over HTTP for the fake API server, as the real one answers them: create (POST to
 * the collection: 201, or 409 AlreadyExists) and replace (PUT to the object: 200, 404
 * NotFound when it does not exist, 409 Conflict for a stale metadata.resourceVersion) of
 * the namespaced resources in WRITABLE, authorized like reads (verb create or update,
 * else 403). The body must be JSON naming the object (400 otherwise, or when its name or
 * namespace disagree with the path).
 */
import type http from "node:http";
import type { FakeStore, KubeObject, Resource } from "./store.js";
import { json, status } from "./reply.js";

/** Resources (plural) that accept create and replace. */
export const WRITABLE: ReadonlySet<string> = new Set(["configmaps"]);

export interface WriteTarget {
  readonly resource: Resource;
  readonly namespace: string;
  /** The object's name for PUT; undefined for POST (the collection). */
  readonly name: string | undefined;
}

export function serveWrite(req: http.IncomingMessage, res: http.ServerResponse, t: WriteTarget, store: FakeStore, allowed: (verb: string) => boolean, user: string): void {
  const r = t.resource;
  const verb = req.method === "POST" ? "create" : "update";
  if ((verb === "create") !== (t.name === undefined)) return status(res, 405, "MethodNotAllowed", `the server does not allow this method on the requested resource`);
  if (!allowed(verb)) {
    return status(res, 403, "Forbidden", `${r.plural}${t.name ? ` "${t.name}"` : ""} is forbidden: User "${user}" cannot ${verb} resource "${r.plural}" in API group "${r.group}" in the namespace "${t.namespace}"`, { group: r.group, kind: r.plural, ...(t.name ? { name: t.name } : {}) });
  }
  let raw = "";
  req.setEncoding("utf8");
  req.on("data", (c: string) => (raw += c));
  req.on("end", () => {
    let body: KubeObject;
    try {
      body = JSON.parse(raw) as KubeObject;
    } catch {
      return status(res, 400, "BadRequest", "the body of the request is not JSON");
    }
    const meta = body?.metadata;
    const name = meta?.name;
    if (typeof name !== "string" || name === "") return status(res, 400, "BadRequest", "metadata.name: Required value: name is required");
    if (meta.namespace !== undefined && meta.namespace !== t.namespace) return status(res, 400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
    if (t.name !== undefined && name !== t.name) return status(res, 400, "BadRequest", `the name of the object (${name}) does not match the name on the URL (${t.name})`);
    const prev = store.get(r, t.namespace, name);
    const details = { name, group: r.group, kind: r.plural };
    if (verb === "create" && prev) return status(res, 409, "AlreadyExists", `${r.plural} "${name}" already exists`, details);
    if (verb === "update" && !prev) return status(res, 404, "NotFound", `${r.plural} "${name}" not found`, details);
    if (verb === "update" && meta.resourceVersion && meta.resourceVersion !== prev!.metadata.resourceVersion) {
      return status(res, 409, "Conflict", `Operation cannot be fulfilled on ${r.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`, details);
    }
    const { resourceVersion: _rv, uid: _uid, creationTimestamp: _ct, ...rest } = meta;
    const saved = store.apply(r.kind, { ...body, metadata: { ...rest, namespace: t.namespace } });
    json(res, verb === "create" ? 201 : 200, saved);
  });
}

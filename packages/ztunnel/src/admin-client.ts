/** GET a JSON document from a running agent's admin port, for the CLI's commands. */
import http from "node:http";

/** The agent could not be asked, or answered something else than asked: the CLI says so and exits 1. */
export class AdminQueryError extends Error {}

export function adminGetJson<T>(admin: string, path: string, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = http.get(`http://${admin}${path}`, { agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new AdminQueryError(`the agent's admin port at ${admin} answered ${res.statusCode}: ${body.trim().slice(0, 300)}`));
        try {
          resolve(JSON.parse(body) as T);
        } catch {
          reject(new AdminQueryError(`the agent's admin port at ${admin} answered something that is not ${what}`));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error("no answer in 5 s")));
    req.on("error", (err: NodeJS.ErrnoException) =>
      reject(new AdminQueryError(`cannot reach the agent's admin port at ${admin} (${err.code ?? err.message}); is the agent running there? --admin host:port points elsewhere`)),
    );
  });
}

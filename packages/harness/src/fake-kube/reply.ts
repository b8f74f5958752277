/** The fake API server's answers: JSON bodies, Kubernetes `Status` objects for failures. */
import type http from "node:http";

export function statusBody(code: number, reason: string, message: string, details?: Record<string, unknown>): unknown {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, ...(details ? { details } : {}), code };
}

export function status(res: http.ServerResponse, code: number, reason: string, message: string, details?: Record<string, unknown>): void {
  json(res, code, statusBody(code, reason, message, details));
}

export function json(res: http.ServerResponse, code: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
  res.end(data);
}

export function text(res: http.ServerResponse, code: number, body: string): void {
  res.writeHead(code, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

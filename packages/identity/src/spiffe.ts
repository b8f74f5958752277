import { ZtError } from "@zt/errors";
import { spiffeId } from "@zt/state";

/** The parts of a Kubernetes workload SPIFFE id: spiffe://<td>/ns/<ns>/sa/<sa>. */
export interface SpiffeParts {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** SPIFFE trust domains are lower-case letters, digits, '.', '-' and '_'. */
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
/** SPIFFE path segments: letters, digits, '.', '-' and '_' (never "." or ".."). */
const SEGMENT = /^[A-Za-z0-9._-]{1,253}$/;
const MAX_ID_LENGTH = 2048;

function validSegment(s: string): boolean {
  return SEGMENT.test(s) && s !== "." && s !== "..";
}

/**
 * Parses a workload identity strictly: exactly `spiffe://<td>/ns/<ns>/sa/<sa>`,
 * no port, user info, query, fragment, trailing slash or extra segments.
 * Returns undefined for anything else.
 */
export function parseSpiffe(uri: string): SpiffeParts | undefined {
  if (uri.length > MAX_ID_LENGTH || !uri.startsWith("spiffe://")) return undefined;
  const parts = uri.slice("spiffe://".length).split("/");
  if (parts.length !== 5) return undefined;
  const [trustDomain, ns, namespace, sa, serviceAccount] = parts as [string, string, string, string, string];
  if (ns !== "ns" || sa !== "sa") return undefined;
  if (!TRUST_DOMAIN.test(trustDomain)) return undefined;
  if (!validSegment(namespace) || !validSegment(serviceAccount)) return undefined;
  return { trustDomain, namespace, serviceAccount };
}

/**
 * Formats a workload identity; throws ZtError SPIFFE_ID_INVALID when a part
 * would not survive `parseSpiffe` (so every formatted id round-trips).
 */
export function formatSpiffe(parts: SpiffeParts): string {
  const id = spiffeId(parts.trustDomain, parts.namespace, parts.serviceAccount);
  if (!parseSpiffe(id)) {
    throw new ZtError(
      "SPIFFE_ID_INVALID",
      `cannot form a SPIFFE id from trust domain "${parts.trustDomain}", namespace "${parts.namespace}", ` +
        `service account "${parts.serviceAccount}": trust domains allow [a-z0-9._-], ` +
        `namespace and service account allow [A-Za-z0-9._-]`,
    );
  }
  return id;
}

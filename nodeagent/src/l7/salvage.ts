// SPDX-License-Identifier: Apache-2.0
/**
 * One tenant's bad row must not take every tenant's L7 service down. The
 * API checks what it stores, but rows written before a check existed (an
 * empty header value, say) still compile into the document, and refusing
 * the whole document for them would leave every other tenant's routes,
 * weights and policies at their last state for as long as the row stays.
 * So a document that fails is read again frontend by frontend: each one
 * that passes alone (with its own backends and its tenant's JWT keys) is
 * served, each one that does not is left out and named. Leaving one out is
 * fail-closed: its VIP is still steered to the proxy, which answers 503
 * "no L7 service at this address", never around the proxy.
 *
 * What is not a frontend's alone (the proxy address, the callers, names
 * two frontends share) still refuses the whole document, as before.
 */
import { checkL7Document, type L7Document } from "./document.ts";

export interface RefusedFrontend {
  /** The frontend's name as the document gives it ("" when even that is unreadable). */
  frontend: string;
  tenant: string;
  /** checkL7Document's fault, with the path into the document as served. */
  reason: string;
}

export type SalvagedL7Document = { document: L7Document; refused: RefusedFrontend[] };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const text = (v: unknown): string => (typeof v === "string" ? v : "");
const unique = (names: string[]) => new Set(names).size === names.length;

/** The backend names a frontend's rules and default send to, as far as they can be read. */
function backendNamesOf(f: Record<string, unknown>): Set<string> {
  const names = new Set<string>([text(f.defaultBackend)]);
  for (const r of Array.isArray(f.rules) ? f.rules : []) {
    if (!isObject(r) || !Array.isArray(r.backends)) continue;
    for (const ref of r.backends) if (isObject(ref)) names.add(text(ref.backend));
  }
  names.delete("");
  return names;
}

/** The document `body` is, less the frontends that fail on their own; or why the document as a whole is refused. */
export function salvageL7Document(body: unknown): SalvagedL7Document | string {
  const whole = checkL7Document(body);
  if (typeof whole !== "string") return { document: whole, refused: [] };
  if (!isObject(body) || !Array.isArray(body.frontends) || !Array.isArray(body.backends)) return whole;
  const jwks = Array.isArray(body.jwks) ? body.jwks : undefined;
  const shell = { ...body, frontends: [], backends: [], ...(jwks === undefined ? {} : { jwks: [] }) };
  // Not a frontend's fault (the proxy address, the callers, an unknown member): nothing can be served.
  if (typeof checkL7Document(shell) === "string") return whole;
  // Nor a name twice: the compiler mints the names, so a clash is its fault, and which frontend to blame would be a guess.
  const nameOf = (v: unknown) => (isObject(v) ? text(v.name) : "");
  if (!unique(body.frontends.map(nameOf)) || !unique(body.backends.map(nameOf))) return whole;

  const backendsByName = new Map<string, { backend: unknown; at: number }[]>();
  for (const [at, backend] of body.backends.entries()) {
    const name = isObject(backend) ? text(backend.name) : "";
    backendsByName.set(name, [...(backendsByName.get(name) ?? []), { backend, at }]);
  }
  const kept: { frontend: unknown; backends: Set<string>; tenant: string }[] = [];
  const refused: RefusedFrontend[] = [];
  for (const [i, f] of body.frontends.entries()) {
    const frontend = isObject(f) ? text(f.name) : "";
    const tenant = isObject(f) ? text(f.tenant) : "";
    const backends = isObject(f) ? backendNamesOf(f) : new Set<string>();
    const own = [...backends].flatMap((n) => backendsByName.get(n) ?? []);
    const alone = {
      ...shell,
      frontends: [f],
      backends: own.map((b) => b.backend),
      ...(jwks === undefined ? {} : { jwks: jwks.filter((k) => isObject(k) && k.tenant === tenant) }),
    };
    const checked = checkL7Document(alone);
    // The fault's path into the document as served, not into the one-frontend document it was found in.
    const reason = typeof checked === "string" ? checked.replace(/^\/frontends\/0\b/, `/frontends/${i}`).replace(/^\/backends\/(\d+)\b/, (_, j: string) => `/backends/${own[Number(j)]?.at ?? j}`) : "";
    if (typeof checked === "string") refused.push({ frontend, tenant, reason });
    else kept.push({ frontend: f, backends, tenant });
  }
  const keptBackends = new Set(kept.flatMap((k) => [...k.backends]));
  const keptTenants = new Set(kept.map((k) => k.tenant));
  const salvaged = {
    ...shell,
    frontends: kept.map((k) => k.frontend),
    backends: body.backends.filter((b) => isObject(b) && keptBackends.has(text(b.name))),
    ...(jwks === undefined ? {} : { jwks: jwks.filter((k) => isObject(k) && keptTenants.has(text(k.tenant))) }),
  };
  // Each passed alone; together they may still clash (a name or a listener twice): the compiler's fault, refused whole.
  const together = checkL7Document(salvaged);
  return typeof together === "string" ? whole : { document: together, refused };
}

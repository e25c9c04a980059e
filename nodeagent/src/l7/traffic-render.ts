// SPDX-License-Identifier: Apache-2.0
/**
 * The haproxy.cfg lines of a frontend's trafficPolicy (issue 21; L7Traffic
 * of the document), pure like render.ts, which places them:
 *
 * - maxConnections: `maxconn` on every server of every backend of the
 *   frontend. HAProxy counts a server's requests in flight (streams), which
 *   is what the policy bounds. A workload that is a server of several of
 *   the frontend's backends (a rule's subset and the default) is bounded in
 *   each: HAProxy 2.6 cannot share one server's limit across backends.
 * - maxPendingRequests: a request that finds every server of its backend
 *   at its limit waits in that backend's queue; the limit is on the
 *   requests waiting in all the frontend's backends together (the
 *   service's pending requests, Istio's per-service count), checked as each
 *   request enters its backend: past it, 503 problem+json at once (record
 *   refused "overflow"). The queues are read before a request joins one,
 *   so requests arriving at once on HAProxy's threads may all see room;
 *   the backend's own count closes that race: `be_conn` counts every
 *   request the backend holds, this one included, from the moment it was
 *   picked, so past maxConnections x its usable servers plus the limit a
 *   request is refused whatever the others' timing (exact for a service
 *   whose requests all go to one backend, its default; with route subsets,
 *   each subset's waiting requests are bounded exactly and the service's
 *   total as the queues allow). Servers' own queues (`maxqueue`) hold only
 *   requests persisted to one server, which Weft never makes: unused. A
 *   request waits at most QUEUE_TIMEOUT_MS, then HAProxy answers 503.
 * - rateLimit: a token bucket of `burst` tokens refilled at
 *   requestsPerSecond, per caller identity (txn.caller_id: from the source
 *   address, never a header). HAProxy's nearest construct is a sliding rate
 *   over a period: a stick-table per frontend keyed by the identity (its
 *   SHA-256, so any length of SPIFFE ID is one key) counts admitted
 *   requests over burst/requestsPerSecond seconds; a caller who reached
 *   `burst` in that window is refused (429 problem+json, Retry-After, record
 *   refused "rate-limited"), and refusals do not count, so a caller that
 *   keeps trying is admitted again as soon as its window allows. Over any
 *   window at most `burst` requests pass, so the long-run rate is
 *   requestsPerSecond. Retry-After is the window, rounded up to whole
 *   seconds (at least 1): by then the caller's count has begun to fall.
 *   The tables outlive a reload: each table is shared with the local peer
 *   (peersLines), through which HAProxy's old worker teaches the new one
 *   every entry before it exits, so a caller past its burst stays refused
 *   whatever reloads another tenant's route writes cause. A restart of
 *   HAProxy (a crash, a new agent) starts them empty.
 */
import type { L7Document, L7Frontend, L7Traffic } from "./document.ts";
import { problemReturn } from "./problem.ts";

/** How long a request waits for a server at its maxConnections before HAProxy answers 503. */
export const QUEUE_TIMEOUT_MS = 1_000;

/** The rate-limit window: a bucket of `burst` refilled at requestsPerSecond empties and refills in burst/requestsPerSecond seconds. */
export function rateWindowMs(r: NonNullable<L7Traffic["rateLimit"]>): number {
  return Math.ceil((r.burst * 1000) / r.requestsPerSecond);
}

/** Retry-After of a 429, in seconds (at least 1). */
export const retryAfterSeconds = (r: NonNullable<L7Traffic["rateLimit"]>) => Math.max(1, Math.ceil(rateWindowMs(r) / 1000));

/** Each backend's frontend (the document check makes it one). */
export function frontendsOfBackends(doc: L7Document): Map<string, L7Frontend> {
  const owner = new Map<string, L7Frontend>();
  for (const f of doc.frontends) for (const b of backendsOf(f)) owner.set(b, f);
  return owner;
}

/** Every backend section a frontend may send to, in a fixed order: its default, then its rules'. */
export function backendsOf(f: L7Frontend): string[] {
  return [...new Set([f.defaultBackend, ...f.rules.flatMap((r) => r.backends.map((ref) => ref.backend))])];
}

/** What every server line of the frontend's backends gets. */
export const serverLimit = (t: L7Traffic | undefined) => (t?.maxConnections === undefined ? "" : ` maxconn ${t.maxConnections}`);

/** Frontend lines (`on` selects the frontend) that count the requests waiting in all of the frontend's backends, for the backends' check. */
export function pendingLines(f: L7Frontend, on: string): string[] {
  const t = f.traffic;
  if (t?.maxConnections === undefined || t.maxPendingRequests === undefined) return [];
  const [first, ...rest] = backendsOf(f);
  const lines = [`http-request set-var(txn.pending) queue(${first}) if ${on}`];
  for (const b of rest) lines.push(`http-request set-var(txn.queued) queue(${b}) if ${on}`, `http-request set-var(txn.pending) var(txn.pending),add(txn.queued) if ${on}`);
  return lines;
}

/** Lines at the head of a backend (with servers) of frontend `f`: the queue's timeout and the pending-requests check. */
export function backendTrafficLines(f: L7Frontend): string[] {
  const t = f.traffic;
  if (t?.maxConnections === undefined) return [];
  const lines = [`timeout queue ${QUEUE_TIMEOUT_MS}`];
  if (t.maxPendingRequests === undefined) return lines;
  // What this backend holds beyond its servers' connections and the limit (this request included): more than 0 would wait past it.
  lines.push(`http-request set-var(txn.capacity) nbsrv,mul(${t.maxConnections}),add(${t.maxPendingRequests})`, "http-request set-var(txn.excess) be_conn,sub(txn.capacity)");
  // Only a request that would wait is refused: with a free connection it goes to a server whatever the queues hold.
  const full = `{ var(txn.pending) -m int ge ${t.maxPendingRequests} } { be_conn_free le 0 } || { var(txn.excess) -m int gt 0 }`;
  const detail = `${f.tenant}/${f.service} has ${t.maxPendingRequests} requests waiting for a backend, the limit of trafficPolicy ${t.policy}`;
  lines.push(`http-request set-var(txn.refused) str(overflow) if ${full}`, `${problemReturn({ status: 503, title: "Service Unavailable", detail })} if ${full}`);
  return lines;
}

/** The stick-table section of frontend `f`'s rate limit: upper case, a name the compiler never mints. */
export const rateTableName = (f: L7Frontend) => `RATE_${f.name}`;

/** Frontend lines of `f`'s rate limit (after authorization: `on` selects the frontend), and its table section; none without a rate limit. */
export function rateLimitLines(f: L7Frontend, on: string, callers: number): { frontend: string[]; table: string[] } {
  const r = f.traffic?.rateLimit;
  if (!r) return { frontend: [], table: [] };
  const window = rateWindowMs(r);
  const table = rateTableName(f);
  const over = `${on} { sc0_gpc0_rate ge ${r.burst} }`;
  const detail = `${r.requestsPerSecond} requests per second (burst ${r.burst}) per caller to ${f.tenant}/${f.service}, trafficPolicy ${f.traffic!.policy}`;
  return {
    frontend: [
      `http-request track-sc0 var(txn.caller_id),sha2(256) table ${table} if ${on}`,
      `http-request set-var(txn.refused) str(rate-limited) if ${over}`,
      `${problemReturn({ status: 429, title: "Too Many Requests", detail }, [["retry-after", String(retryAfterSeconds(r))]])} if ${over}`,
      `http-request sc-inc-gpc0(0) if ${on}`,
    ],
    // Room for every identity that may call (callers of this node), twice over; an entry outlives its window.
    table: [`backend ${table}`, `  stick-table type binary len 32 size ${Math.max(64, 2 * callers)} expire ${2 * window} store gpc0_rate(${window}) peers ${PEERS_SECTION}`],
  };
}

/** The peers section of the rate-limit tables and the local peer's name: upper and lower case words the compiler never mints. */
export const PEERS_SECTION = "WEFT";
export const LOCAL_PEER = "local";

/** The local peer's socket. */
export const peersSocketPath = (stateDir: string) => `${stateDir}/l7-peers.sock`;

/**
 * The global line and the peers section that carry the tables across a
 * reload: on SIGUSR2 the old worker connects to the local peer's address,
 * which the new worker now holds (the master passes the listener on), and
 * pushes every entry of every table of the section before it exits.
 *
 * Why this listener is safe: the peers protocol has no authentication, and
 * whoever connects may write any entry (zero a caller's count, fill
 * another's). So it is no TCP port at all, but a unix socket in the
 * agent's state directory, mode 600: only root on this node can connect,
 * nothing off the node can reach it, a workload (in its own network
 * namespace, or any other user) cannot, and two agents' proxies on one
 * machine never share it (each has its own state directory; a TCP port
 * would need picking, and HAProxy binds with SO_REUSEPORT, so a collision
 * would not even fail).
 */
export function peersLines(stateDir: string): { global: string[]; section: string[] } {
  return {
    global: [`localpeer ${LOCAL_PEER}`],
    section: [`peers ${PEERS_SECTION}`, `  bind unix@${peersSocketPath(stateDir)} mode 600`, `  server ${LOCAL_PEER}`],
  };
}


// SPDX-License-Identifier: Apache-2.0
/**
 * haproxy.cfg from the node's L7 document (issue 21): a pure function, the
 * same document always the same text. One frontend takes every connection
 * the kernel steers to 127.0.0.1:L7_PROXY_PORT (transparent: it sees the
 * VIP as `dst`, the calling workload as `src`) and, per request:
 *
 *  1. finds the L7 frontend by (dst, dst_port); none: 503 problem;
 *  2. deletes every x-weft-* header the client sent, then names the caller
 *     from `src` in callers.map (tenant, SPIFFE ID), never from a header,
 *     and tells the backend who called in x-weft-source-identity;
 *  3. authorizes: a caller of another tenant (or none known) 403; a deny
 *     entry that matches 403 (deny wins); governed and no allow entry
 *     matches 403. Refusals are application/problem+json;
 *  3b. counts the request against the caller's rate limit, if the
 *     service's trafficPolicy has one: past it 429 (traffic-render.ts,
 *     with the connection pool limits on its backends);
 *  4. picks the first rule whose match holds, then one of its backends by
 *     weight (rand over the cumulated weights); no rule: the default
 *     backend (the whole service).
 *
 * Backends connect from the node's proxy address (`source`), retry per the
 * rule (a POST, PATCH or CONNECT only with nonIdempotent), and log one JSON
 * record per request to the agent (a ring forwarded to its socket: see RECORD_LOG_TARGET).
 *
 * Timeouts: `timeout server` is each attempt's bound (backendRequestTimeoutMs,
 * else requestTimeoutMs, else 30 s). HAProxy 2.6 has no bound on a request
 * across its retries, so the request timeout is kept by the retry count: a
 * rule with both gets at most floor(request / backendRequest) attempts in
 * all (at least one), so the attempts together never outlast the request.
 */
import { constants } from "@weft/codec";
import { join } from "node:path";
import { PROXY_TARGETS_DIR, proxyTargetPath } from "../transport/proxy-targets.ts";
import type { HeaderModifier, L7Authorization, L7Backend, L7Document, L7Frontend, L7Match, RetryCondition } from "./document.ts";
import { jwtRendering, type JwtRendering } from "./jwt-render.ts";
import { TRACE_CONTEXT_LINES, TRACE_LOG_FIELDS } from "./render-trace.ts";
import { problemReturn } from "./problem.ts";
import { errorFileLines, invalidHeaderLines } from "./proxy-errors.ts";
import { backendTrafficLines, frontendsOfBackends, peersLines, pendingLines, rateLimitLines, serverLimit } from "./traffic-render.ts";

/** HAProxy's weights are 0..256; the compiler's already are. */
const DEFAULT_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 2_000;
/** Connections at once: HAProxy needs about two descriptors each, which fits the 20,000 these machines allow a process. */
const MAXCONN = 8_192;
/** Log records longer than this are cut by HAProxy (and the record is then unreadable, so render what fits: LOGGED_PATH_MAX). */
export const LOG_RECORD_MAX = 4_000;
/**
 * Where records go: an in-memory ring of this many bytes in each worker,
 * whose forwarder sends them to the agent's record socket
 * (record-socket.ts). The ring takes a burst the agent reads late (about
 * 20,000 records of ~400 bytes: seconds at the rates these machines
 * reach) where the stdout pipe took 64 KiB; HAProxy touches its pages
 * only as it fills, and a worker's ring is freed with it.
 */
export const RECORD_RING_BYTES = 8 * 1024 * 1024;
/** The ring's section name: upper case, which the compiler's names never are. */
export const RECORD_RING = "RECORDS";
export const RECORD_LOG_TARGET = `ring@${RECORD_RING} len ${LOG_RECORD_MAX} format raw`;

/**
 * What a record keeps of the path: escaped by the json converter it grows
 * to at most six times as many, and the record stays within LOG_RECORD_MAX.
 */
export const LOGGED_PATH_MAX = 512;

/** Sections the agent adds: upper case, which the compiler's names ([a-z0-9_-]) never are. */
export const FRONTEND_SECTION = "L7";
const NO_FRONTEND = "NO_FRONTEND";

export interface RenderOptions {
  /** The agent's state directory: the admin socket is there. */
  stateDir: string;
  /** The callers map file (renderCallersMap) the config reads; its name changes with its content (driver.ts). */
  callersMap: string;
  /** The frontend's listener; default 127.0.0.1:L7_PROXY_PORT (tests: a free port). */
  listen?: { address: string; port: number };
  /**
   * Plain (not transparent) listeners added to the frontend. Tests only:
   * without the kernel steering, a connection's dst is the listener itself,
   * so a test document's frontend "VIP" 127.0.0.1:P is reached by binding P.
   */
  extraBinds?: readonly string[];
  /** HAProxy's threads (nbthread); absent: HAProxy's default, one per CPU. */
  threads?: number;
}

export const adminSocketPath = (stateDir: string) => `${stateDir}/l7-admin.sock`;
export const recordSocketPath = (stateDir: string) => `${stateDir}/l7-records.sock`;
export const masterSocketPath = (stateDir: string) => `${stateDir}/l7-master.sock`;
export const configPath = (stateDir: string) => `${stateDir}/haproxy.cfg`;

/** A config string in double quotes: the characters HAProxy's parser treats specially are escaped. */
export function quote(text: string): string {
  return `"${text.replace(/[\\"'$#]/g, (c) => `\\${c}`)}"`;
}

/** A log-format string (header values): '%' is literal only doubled. */
const logFormat = (text: string) => quote(text.replace(/%/g, "%%"));

/**
 * The JSON record per request. Only fields HAProxy itself shapes are
 * written bare (numbers, addresses, the compiler's names); what a client
 * sends (the path) goes through the json converter. The server's
 * port is quoted (HAProxy writes "-" when no server was asked), and so are
 * the retries (a "+" before them when the last went to another server).
 */
export const LOG_FORMAT = [
  `"startMs":%Ts%ms`,
  `"src":"%ci"`,
  `"srcPort":%cp`,
  `"caller":"%[var(txn.caller_id)]"`,
  `"frontend":"%[var(txn.fe)]"`,
  `"service":"%[var(txn.service)]"`,
  `"vip":"%fi"`,
  `"vport":%fp`,
  `"route":"%[var(txn.route)]"`,
  `"backend":"%b"`,
  `"server":"%s"`,
  `"serverAddress":"%si"`,
  `"serverPort":"%sp"`,
  `"status":%ST`,
  `"durationMs":%Ta`,
  `"retries":"%rc"`,
  `"bytesIn":%U`,
  `"bytesOut":%B`,
  `"method":"%HM"`,
  `"path":"%[var(txn.path),json(utf8s)]"`,
  ...TRACE_LOG_FIELDS,
  `"refused":"%[var(txn.refused)]"`,
].join(",");

/** Gateway API PathPrefix semantics: whole segments ('/api' matches /api and /api/x, not /apix). */
function prefixCriteria(prefix: string): string[] {
  if (prefix === "/") return [];
  if (prefix.endsWith("/")) return [`path_beg ${quote(prefix)}`];
  return [`path -m str ${quote(prefix)}`, `path_beg ${quote(`${prefix}/`)}`];
}

/** The retry-on conditions HAProxy knows for each of the route's. */
const RETRY_ON: Record<RetryCondition, string[]> = {
  "5xx": ["500", "501", "502", "503", "504"],
  "gateway-error": ["502", "503", "504"],
  "connect-failure": ["conn-failure"],
  reset: ["empty-response", "junk-response"],
  timeout: ["response-timeout"],
};

/** Each attempt's bound and the retries that fit the request's bound (see the header). */
export function attemptsOf(b: Pick<L7Backend, "requestTimeoutMs" | "backendRequestTimeoutMs" | "retry">): { perTryMs: number; retries: number } {
  const request = b.requestTimeoutMs;
  const perTryMs = Math.min(b.backendRequestTimeoutMs ?? request ?? DEFAULT_TIMEOUT_MS, request ?? Number.MAX_SAFE_INTEGER);
  const wanted = b.retry?.attempts ?? 0;
  const fit = request === undefined ? wanted : Math.max(0, Math.floor(request / perTryMs) - 1);
  return { perTryMs, retries: Math.min(wanted, fit) };
}

function headerLines(direction: "request" | "response", m: HeaderModifier | undefined): string[] {
  if (!m) return [];
  return [
    ...(m.remove ?? []).map((name) => `http-${direction} del-header ${quote(name)}`),
    ...(m.set ?? []).map((h) => `http-${direction} set-header ${quote(h.name)} ${logFormat(h.value)}`),
    ...(m.add ?? []).map((h) => `http-${direction} add-header ${quote(h.name)} ${logFormat(h.value)}`),
  ];
}

/** Where a server is reached: directly, or through the transport's socket for it (transport/proxy-targets.ts). */
const serverAddress = (s: L7Backend["servers"][number], stateDir: string): string =>
  s.transport ? `unix@${proxyTargetPath(join(stateDir, PROXY_TARGETS_DIR), s)}` : `${s.address}:${s.port}`;

function backendSection(b: L7Backend, f: L7Frontend | undefined, proxyAddress: string, stateDir: string): string[] {
  const { perTryMs, retries } = attemptsOf(b);
  const lines = [`backend ${b.name}`, `  source ${proxyAddress}`, `  timeout server ${perTryMs}`, `  retries ${retries}`];
  // The service's limits come first: a request refused for overflow is not retried, changed or sent.
  if (f && b.servers.length > 0) lines.push(...backendTrafficLines(f).map((l) => `  ${l}`));
  if (b.retry && retries > 0) {
    const on = [...new Set(b.retry.on.flatMap((c) => RETRY_ON[c]))];
    lines.push(`  retry-on ${on.join(" ")}`);
    if (!b.retry.nonIdempotent) lines.push("  http-request disable-l7-retry if { method POST PATCH CONNECT }");
  } else lines.push("  retry-on none");
  lines.push(...headerLines("request", b.requestHeaders).map((l) => `  ${l}`));
  lines.push(...headerLines("response", b.responseHeaders).map((l) => `  ${l}`));
  if (b.servers.length === 0) {
    lines.push("  http-request set-var(txn.refused) str(no-servers)");
    lines.push(`  ${problemReturn({ status: 503, title: "Service Unavailable", detail: `backend ${b.name} has no servers` })}`);
  }
  for (const s of b.servers) lines.push(`  server ${s.name} ${serverAddress(s, stateDir)} weight ${s.weight}${serverLimit(f?.traffic)}`);
  return lines;
}

/**
 * The conditions (HAProxy `if` terms, ANDed) of one route match, or null when it can never hold. Its headers are
 * ACLs declared in `acls` as `name`_h<k>: HAProxy reads at most 64 words a line, and a match may hold 16 headers.
 */
function matchTerms(m: L7Match, name: string, acls: string[]): string[][] {
  const and: string[] = [];
  if (m.method) and.push(`{ method ${m.method} }`);
  for (const [k, h] of (m.headers ?? []).entries()) {
    // A token may hold "'", which opens a quoted string in a fetch's argument: escaped, it is the name's own.
    acls.push(`acl ${name}_h${k} ${quote(`req.fhdr(${h.name.replace(/'/g, "\\'")})`)} -m str -- ${quote(h.value)}`);
    and.push(`${name}_h${k}`);
  }
  const path = m.path;
  if (!path) return [and];
  if ((path.type ?? "PathPrefix") === "Exact") return [[...and, `{ path -m str ${quote(path.value)} }`]];
  const criteria = prefixCriteria(path.value);
  return criteria.length === 0 ? [and] : criteria.map((c) => [...and, `{ ${c} }`]);
}

/** A pattern list cut into lines HAProxy reads whole (at most 64 words each): ACL lines of one name match when any does. */
const PATTERNS_PER_LINE = 32;
const patternLines = (patterns: readonly string[]): string[][] =>
  Array.from({ length: Math.ceil(patterns.length / PATTERNS_PER_LINE) }, (_, i) => patterns.slice(i * PATTERNS_PER_LINE, (i + 1) * PATTERNS_PER_LINE));

/** Lines of the frontend for one L7 frontend `f` (the index i names its ACLs). */
function frontendRules(
  f: L7Frontend,
  i: number,
  backends: ReadonlyMap<string, L7Backend>,
  jwt: JwtRendering,
  callers: number,
): { select: string[]; decide: string[]; route: string[]; tables: string[] } {
  const fe = `fe${i}`;
  const on = `{ var(txn.fe) -m str ${f.name} }`;
  const refuse = (detail: string, extra: string) => [`http-request set-var(txn.refused) str(forbidden) if ${on} ${extra}`, `${problemReturn({ status: 403, title: "Forbidden", detail })} if ${on} ${extra}`];
  const decide: string[] = [...refuse(`callers of other tenants may not call ${f.tenant}/${f.service}`, `!{ var(txn.caller_tenant) -m str ${f.tenant} }`)];
  // Callers the compiler found held back by their own egress policy (the kernel made no egress decision for them).
  for (const line of patternLines(f.egressDenied ?? [])) {
    decide.push(...refuse(`the egress policy of the caller does not let it reach ${f.tenant}/${f.service}`, `{ var(txn.caller_id) -m str ${line.map(quote).join(" ")} }`));
  }
  decide.push(...authorization(fe, f, on, refuse, jwt));
  // Only requests the caller may make count against its rate.
  const rate = rateLimitLines(f, on, callers);
  decide.push(...rate.frontend);
  const route: string[] = [];
  for (const [j, r] of f.rules.entries()) {
    const terms = r.matches.length === 0 ? [[]] : r.matches.flatMap((m, k) => matchTerms(m, `${fe}_r${j}_m${k}`, route));
    for (const and of terms) route.push(`http-request set-var(txn.rule) int(${j}) if ${on} !{ var(txn.rule) -m found } ${and.join(" ")}`.trimEnd());
    route.push(`http-request set-var(txn.route) str(${r.route}/${r.rule}) if ${on} { var(txn.rule) -m int ${j} }`);
  }
  const uses: string[] = [];
  for (const [j, r] of f.rules.entries()) {
    const eligible = r.backends.filter((ref) => ref.weight > 0 && (backends.get(ref.backend)?.servers.length ?? 0) > 0);
    const ruleOn = `${on} { var(txn.rule) -m int ${j} }`;
    if (eligible.length === 0) {
      route.push(`http-request set-var(txn.refused) str(no-backend) if ${ruleOn}`);
      route.push(`${problemReturn({ status: 503, title: "Service Unavailable", detail: `route ${r.route} rule ${r.rule} of ${f.tenant}/${f.service} has no backend with servers` })} if ${ruleOn}`);
      continue;
    }
    const total = eligible.reduce((n, ref) => n + ref.weight, 0);
    let from = 0;
    for (const ref of eligible) {
      const to = from + ref.weight - 1;
      uses.push(eligible.length === 1 ? `use_backend ${ref.backend} if ${ruleOn}` : `use_backend ${ref.backend} if ${ruleOn} { var(txn.pick),mod(${total}) -m int ${from}:${to} }`);
      from = to + 1;
    }
  }
  uses.push(`use_backend ${f.defaultBackend} if ${on}`);
  return {
    select: [`http-request set-var(txn.fe) str(${f.name}) if { dst ${f.vip} } { dst_port ${f.port} }`, `http-request set-var(txn.service) str(${f.tenant}/${f.service}) if ${on}`],
    decide,
    route: [...route, ...pendingLines(f, on), ...uses],
    tables: rate.table,
  };
}

/** Deny entries refuse; when governed, a request no allow entry admits is refused. */
function authorization(fe: string, f: L7Frontend, on: string, refuse: (detail: string, extra: string) => string[], jwt: JwtRendering): string[] {
  const a: L7Authorization = f.authorization;
  const lines: string[] = [];
  const acls: string[] = [];
  const conditions = a.entries.map((e, k) => {
    const name = `${fe}_e${k}`;
    const parts: string[] = [];
    if (e.sources) {
      for (const line of patternLines(e.sources)) acls.push(`acl ${name}_src var(txn.caller_id) -m str ${line.map(quote).join(" ")}`);
      parts.push(`${name}_src`);
    }
    if (e.methods) {
      acls.push(`acl ${name}_m method ${e.methods.join(" ")}`);
      parts.push(`${name}_m`);
    }
    const paths = (e.pathPrefixes ?? []).map(prefixCriteria);
    // Any path: absent, or a prefix "/" among them.
    if (e.pathPrefixes && !paths.some((c) => c.length === 0)) {
      // One ACL declared on several lines matches when any line does.
      for (const c of paths.flat()) acls.push(`acl ${name}_p ${c}`);
      parts.push(`${name}_p`);
    }
    if (e.jwt) {
      const check = jwt.entry(name, f.tenant, e.jwt);
      acls.push(...check.lines);
      parts.push(check.term);
    }
    return { e, parts };
  });
  lines.push(...acls);
  for (const { e, parts } of conditions) {
    if (e.action === "deny") lines.push(...refuse(`policy ${e.policy} rule ${e.rule} denies this request to ${f.tenant}/${f.service}`, parts.join(" ")));
  }
  if (a.governed) {
    // Each group is a set of the backends' identities; the request must be admitted for every one
    // (it is decided before its backend is picked). Without groups: one, which every allow entry admits for.
    const groups = a.groups?.length ?? 1;
    for (let g = 0; g < groups; g++) {
      const admits = conditions.filter(({ e }) => e.action === "allow" && (a.groups === undefined || (e.groups ?? []).includes(g)));
      for (const { parts } of admits) lines.push(`http-request set-var(txn.allowed${g}) bool(true) if ${on} ${parts.join(" ")}`.trimEnd());
      lines.push(...refuse(`no policy allows this request to ${f.tenant}/${f.service}`, `!{ var(txn.allowed${g}) -m bool }`));
    }
  }
  return lines;
}

/** callers.map: source address -> "tenant spiffeId", read by map_ip; the SPIFFE ID's characters are checked by the document. */
export function renderCallersMap(doc: L7Document): string {
  return doc.callers.map((c) => `${c.address} ${c.tenant}|${c.spiffeId}\n`).join("");
}

/**
 * The ring the records go through (RECORD_LOG_TARGET) and its forwarder to the
 * agent: octet-counted frames, so a record is read whole whatever it holds.
 * A forwarder that cannot reach the agent tries again every `timeout
 * connect`, the ring holding what comes meanwhile.
 */
export function recordRing(socketPath: string): string[] {
  return [
    `ring ${RECORD_RING}`,
    "  description \"request records for the weft agent\"",
    "  format raw",
    `  maxlen ${LOG_RECORD_MAX}`,
    `  size ${RECORD_RING_BYTES}`,
    "  timeout connect 1s",
    "  timeout server 10m",
    `  server agent unix@${socketPath} log-proto octet-count`,
  ];
}

export function renderConfig(doc: L7Document, o: RenderOptions): string {
  const listen = o.listen ?? { address: "127.0.0.1", port: constants.L7_PROXY_PORT };
  const backends = new Map(doc.backends.map((b) => [b.name, b]));
  const jwt = jwtRendering(doc, o.stateDir, quote);
  const callers = new Set(doc.callers.map((c) => c.spiffeId)).size;
  const perFrontend = doc.frontends.map((f, i) => frontendRules(f, i, backends, jwt, callers));
  const owners = frontendsOfBackends(doc);
  // Only rate limits keep state a reload must carry over.
  const peers = perFrontend.some((p) => p.tables.length > 0) ? peersLines(o.stateDir) : null;
  const lines = [
    "# Rendered by the weft agent from GET /v1/nodes/{node}/l7; edits are overwritten.",
    "global",
    "  master-worker",
    `  stats socket ${adminSocketPath(o.stateDir)} mode 600 level admin expose-fd listeners`,
    `  log ${RECORD_LOG_TARGET} local0`,
    `  maxconn ${MAXCONN}`,
    ...(o.threads ? [`  nbthread ${o.threads}`] : []),
    // An old worker of a reload serves its open connections at most this long.
    "  hard-stop-after 60s",
    ...(peers?.global.map((l) => `  ${l}`) ?? []),
    "",
    ...(peers ? [...peers.section, ""] : []),
    ...recordRing(recordSocketPath(o.stateDir)),
    "",
    "defaults",
    "  mode http",
    "  log global",
    `  log-format '{${LOG_FORMAT}}'`,
    `  timeout connect ${CONNECT_TIMEOUT_MS}`,
    `  timeout client ${DEFAULT_TIMEOUT_MS}`,
    `  timeout server ${DEFAULT_TIMEOUT_MS}`,
    `  timeout http-request 10s`,
    "  http-reuse always",
    "  option redispatch 1",
    // On a reload the old worker answers the next request of each idle keep-alive connection (with Connection: close)
    // instead of closing it under a client that may be sending on it: many clients do not retry a write that fails.
    "  option idle-close-on-response",
    // A body that fits the buffer is read before a server is asked (within timeout http-request): a caller holding it back
    // gets the proxy's 408, never a server's 504 that outlier ejection would count against a healthy backend.
    "  option http-buffer-request",
    // What HAProxy answers itself (no server up, a backend that failed or timed out) is a problem too (proxy-errors.ts).
    ...errorFileLines(o.stateDir).map((l) => `  ${l}`),
    "",
    `frontend ${FRONTEND_SECTION}`,
    `  bind ${listen.address}:${listen.port} transparent`,
    ...(o.extraBinds ?? []).map((b) => `  bind ${b}`),
    // Replies leave marked: the client's tc program passes a VIP-sourced packet only with this mark.
    `  tcp-request connection set-mark 0x${constants.MARK_PROXY.toString(16)}`,
    // Cut so that a record always fits LOG_RECORD_MAX: a longer one would be cut mid-JSON and lost.
    `  http-request set-var(txn.path) path,bytes(0,${LOGGED_PATH_MAX})`,
    ...TRACE_CONTEXT_LINES.map((l) => `  ${l}`),
    ...perFrontend.flatMap((p) => p.select.map((l) => `  ${l}`)),
    `  http-request set-var(txn.refused) str(no-frontend) if !{ var(txn.fe) -m found }`,
    `  ${problemReturn({ status: 503, title: "Service Unavailable", detail: "no L7 service at this address" })} if !{ var(txn.fe) -m found }`,
    // Identity comes from the connection alone: whatever a client claims in x-weft-* is gone before anything reads it.
    "  http-request del-header x-weft- -m beg",
    `  http-request set-var(txn.caller) src,map_ip(${o.callersMap})`,
    `  http-request set-var(txn.caller_tenant) var(txn.caller),field(1,|)`,
    `  http-request set-var(txn.caller_id) var(txn.caller),field(2,|)`,
    // Before anything decides on a header: a control character HAProxy 2.6's parser lets through (proxy-errors.ts).
    ...invalidHeaderLines().map((l) => `  ${l}`),
    ...jwt.prelude.map((l) => `  ${l}`),
    ...perFrontend.flatMap((p) => p.decide.map((l) => `  ${l}`)),
    "  http-request set-header x-weft-source-identity %[var(txn.caller_id)]",
    "  http-request set-var(txn.pick) rand",
    ...perFrontend.flatMap((p) => p.route.map((l) => `  ${l}`)),
    `  default_backend ${NO_FRONTEND}`,
    "",
    `backend ${NO_FRONTEND}`,
    `  ${problemReturn({ status: 503, title: "Service Unavailable", detail: "no L7 service at this address" })}`,
  ];
  for (const b of doc.backends) lines.push("", ...backendSection(b, owners.get(b.name), doc.proxyAddress, o.stateDir));
  for (const p of perFrontend) if (p.tables.length) lines.push("", ...p.tables);
  return `${lines.join("\n")}\n`;
}

/** The config with every server weight left out: two documents whose texts differ only in weights differ only in weights. */
export function structureOf(doc: L7Document, o: RenderOptions): string {
  return renderConfig({ ...doc, backends: doc.backends.map((b) => ({ ...b, servers: b.servers.map((s) => ({ ...s, weight: 0 })) })) }, o);
}

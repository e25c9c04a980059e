// SPDX-License-Identifier: Apache-2.0
// haproxy.cfg from the L7 document (nodeagent/src/l7/render.ts): a pure
// function, checked line by line where the design names a directive, and
// as a whole by the real HAProxy (`haproxy -c`). What it does at run time
// is test/agent/l7-proxy.test.ts's.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkConfig } from "../../nodeagent/src/l7/haproxy-process.ts";
import { proxyErrorFiles } from "../../nodeagent/src/l7/proxy-errors.ts";
import { attemptsOf, quote, renderCallersMap, renderConfig, structureOf } from "../../nodeagent/src/l7/render.ts";
import { peersSocketPath, QUEUE_TIMEOUT_MS, rateWindowMs, retryAfterSeconds } from "../../nodeagent/src/l7/traffic-render.ts";
import { richDocument, WEB } from "./l7-fixtures.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();
const dir = mkdtempSync(join(tmpdir(), "weft-l7-render-"));
const options = { stateDir: dir, callersMap: join(dir, "callers.map") };
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const lines = (text: string) => text.split("\n").map((l) => l.trim());
/** The lines of one section (from its header to the next blank line). */
function section(text: string, header: string): string[] {
  const all = text.split("\n");
  const start = all.indexOf(header);
  expect(start, header).toBeGreaterThanOrEqual(0);
  const end = all.indexOf("", start);
  return all.slice(start + 1, end < 0 ? undefined : end).map((l) => l.trim());
}

describe("haproxy.cfg from the L7 document", () => {
  it.skipIf(NO_HAPROXY)("is a config HAProxy takes, for a document using every feature", async () => {
    writeFileSync(options.callersMap, renderCallersMap(richDocument()));
    for (const e of proxyErrorFiles(dir)) writeFileSync(e.path, e.content);
    const path = join(dir, "haproxy.cfg");
    writeFileSync(path, renderConfig(richDocument(), options));
    expect(await checkConfig(HAPROXY, path)).toBeNull();
  });

  it.skipIf(NO_HAPROXY)("reports HAProxy's own reasons for a config it refuses", async () => {
    const path = join(dir, "bad.cfg");
    writeFileSync(path, `${renderConfig(richDocument(), options)}\nbackend broken\n  server s1 198.18.0.1:80 weight 999\n`);
    expect(await checkConfig(HAPROXY, path)).toMatch(/weight/);
  });

  it.skipIf(NO_HAPROXY)("refuses callers the compiler holds to their egress policy, and reaches a transport server through its unix socket, in a config HAProxy takes", async () => {
    const doc = richDocument();
    const f = doc.frontends[0]!;
    f.egressDenied = ["spiffe://acme.test/ns/shop/sa/held"];
    const server = doc.backends[0]!.servers[0]!;
    server.transport = true;
    const text = renderConfig(doc, options);
    const on = `{ var(txn.fe) -m str ${f.name} }`;
    expect(lines(text)).toContain(`http-request set-var(txn.refused) str(forbidden) if ${on} { var(txn.caller_id) -m str "spiffe://acme.test/ns/shop/sa/held" }`);
    expect(lines(text).some((l) => l.startsWith("http-request return status 403") && l.includes("egress policy") && l.endsWith(`if ${on} { var(txn.caller_id) -m str "spiffe://acme.test/ns/shop/sa/held" }`))).toBe(true);
    expect(lines(text).some((l) => l.startsWith(`server ${server.name} unix@${join(dir, "proxy-hops", `${server.address}_${server.port}`)} weight ${server.weight}`))).toBe(true);
    writeFileSync(options.callersMap, renderCallersMap(doc));
    for (const e of proxyErrorFiles(dir)) writeFileSync(e.path, e.content);
    const path = join(dir, "held.cfg");
    writeFileSync(path, text);
    expect(await checkConfig(HAPROXY, path)).toBeNull();
  });

  it("is the same text for the same document", () => {
    expect(renderConfig(richDocument(), options)).toBe(renderConfig(richDocument(), options));
  });

  it("listens transparently on the proxy port, marks its replies, and logs JSON to the agent", () => {
    const text = renderConfig(richDocument(), options);
    const fe = section(text, "frontend L7");
    expect(fe).toContain("bind 127.0.0.1:15006 transparent");
    expect(fe).toContain("tcp-request connection set-mark 0x400000");
    const g = section(text, "global");
    expect(g).toContain("master-worker");
    // HAProxy's own default (a thread per CPU) unless the agent says; the driver always does (proxyThreads).
    expect(g.some((l) => l.startsWith("nbthread"))).toBe(false);
    expect(section(renderConfig(richDocument(), { ...options, threads: 3 }), "global")).toContain("nbthread 3");
    expect(g).toContain(`stats socket ${dir}/l7-admin.sock mode 600 level admin expose-fd listeners`);
    // Records go through a ring to the agent's socket (record-socket.ts), octet-counted, not through a pipe that drops them when full.
    expect(g).toContain("log ring@RECORDS len 4000 format raw local0");
    expect(section(text, "ring RECORDS")).toEqual(expect.arrayContaining(["format raw", "maxlen 4000", `size ${8 * 1024 * 1024}`, `server agent unix@${dir}/l7-records.sock log-proto octet-count`]));
    const d = section(text, "defaults");
    expect(d).toEqual(expect.arrayContaining(["mode http", "http-reuse always", "option redispatch 1", "option idle-close-on-response", "timeout connect 2000", "timeout client 30000", "timeout server 30000"]));
    // HAProxy's own answers are problems too: an errorfile for every status it generates (proxy-errors.ts).
    const errorfiles = d.filter((l) => l.startsWith("errorfile "));
    expect(errorfiles.map((l) => l.split(" ")[1])).toEqual(["400", "401", "403", "404", "405", "407", "408", "410", "413", "425", "429", "500", "501", "502", "503", "504"]);
    expect(errorfiles.map((l) => l.split(" ")[2])).toEqual(proxyErrorFiles(dir).map((e) => e.path));
    expect(d.some((l) => l.startsWith("http-error"))).toBe(false);
    expect(d.find((l) => l.startsWith("log-format"))).toMatch(/"path":"%\[var\(txn.path\),json\(utf8s\)\]"/);
  });

  it("drops the client's x-weft-* headers before it reads the caller, and reads the caller from the source address only", () => {
    const fe = section(renderConfig(richDocument(), options), "frontend L7");
    const del = fe.indexOf("http-request del-header x-weft- -m beg");
    const caller = fe.indexOf(`http-request set-var(txn.caller) src,map_ip(${options.callersMap})`);
    expect(del).toBeGreaterThanOrEqual(0);
    expect(caller).toBeGreaterThan(del);
    // Nothing before the deletion reads a header but traceparent (the trace context, render-trace.ts).
    const read = fe.slice(0, del).filter((l) => /hdr(_cnt)?\(/.test(l));
    expect(read.length).toBeGreaterThan(0);
    expect(read.every((l) => /hdr(_cnt)?\(traceparent\)/.test(l))).toBe(true);
    // A header value with a control character is refused once the caller is known (for the record), before any decision reads a header.
    const control = fe.findIndex((l) => l.startsWith("http-request return status 400") && l.endsWith("if { var(txn.refused) -m str bad-request }"));
    expect(control).toBeGreaterThan(fe.indexOf("http-request set-var(txn.caller_id) var(txn.caller),field(2,|)"));
    expect(control).toBeLessThan(fe.findIndex((l) => l.includes("status 403")));
    expect(fe[control - 1]).toMatch(/^http-request set-var\(txn.refused\) str\(bad-request\) if \{ req.hdrs -m reg '\[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f\]' \}$/);
    // The verified identity is set after authorization, from the map.
    expect(fe.indexOf("http-request set-header x-weft-source-identity %[var(txn.caller_id)]")).toBeGreaterThan(fe.findLastIndex((l) => l.includes("status 403")));
    expect(renderCallersMap(richDocument())).toContain(`${WEB.address} acme|${WEB.spiffeId}\n`);
  });

  it("refuses another tenant, applies deny before allow, and refuses what no allow admits when governed", () => {
    const fe = section(renderConfig(richDocument(), options), "frontend L7");
    const on = "{ var(txn.fe) -m str f-1-80 }";
    const tenant = fe.findIndex((l) => l.startsWith("http-request return status 403") && l.endsWith(`if ${on} !{ var(txn.caller_tenant) -m str acme }`));
    const deny = fe.findIndex((l) => l.startsWith("http-request return status 403") && l.endsWith(`if ${on} fe0_e0_src fe0_e0_m`));
    const allow = fe.indexOf(`http-request set-var(txn.allowed0) bool(true) if ${on} fe0_e1_src fe0_e1_m fe0_e1_p`);
    const governed = fe.findIndex((l) => l.startsWith("http-request return status 403") && l.endsWith(`if ${on} !{ var(txn.allowed0) -m bool }`));
    expect(tenant).toBeGreaterThanOrEqual(0);
    expect(deny).toBeGreaterThan(tenant);
    expect(allow).toBeGreaterThan(deny);
    expect(governed).toBeGreaterThan(allow);
    // Segment prefixes: /api and /api/..., not /apix.
    expect(fe).toEqual(expect.arrayContaining(['acl fe0_e1_p path -m str "/api"', 'acl fe0_e1_p path_beg "/api/"', 'acl fe0_e1_p path_beg "/gone/"']));
    // The ungoverned frontend: only the tenant check.
    expect(fe.filter((l) => l.includes("f-2-8080") && l.includes("403"))).toHaveLength(1);
    for (const l of fe.filter((l) => l.includes("application/problem+json"))) {
      const body = /string '(.*)' if /.exec(l)![1]!;
      expect(JSON.parse(body)).toMatchObject({ type: "about:blank" });
    }
  });

  it.skipIf(NO_HAPROXY)("with groups, a request must be admitted for every group of backends: one variable and one refusal per group", async () => {
    const doc = richDocument();
    const f = doc.frontends[0]!;
    const allows = f.authorization.entries.flatMap((e, k) => (e.action === "allow" ? [k] : []));
    expect(allows.length).toBeGreaterThanOrEqual(2);
    f.authorization.groups = [{ subjects: ["spiffe://acme.test/api/v1"] }, { subjects: ["spiffe://acme.test/api/v2"] }];
    f.authorization.entries[allows[0]!]!.groups = [0];
    f.authorization.entries[allows[1]!]!.groups = [1];
    const text = renderConfig(doc, options);
    const fe = section(text, "frontend L7");
    const on = "{ var(txn.fe) -m str f-1-80 }";
    // Each allow entry sets only its own group's variable.
    expect(fe.filter((l) => l.startsWith("http-request set-var(txn.allowed0)") && l.includes(on)).map((l) => /fe0_e(\d+)_/.exec(l)?.[1])).toEqual([String(allows[0])]);
    expect(fe.filter((l) => l.startsWith("http-request set-var(txn.allowed1)") && l.includes(on)).map((l) => /fe0_e(\d+)_/.exec(l)?.[1])).toEqual([String(allows[1])]);
    for (const g of [0, 1]) expect(fe.some((l) => l.startsWith("http-request return status 403") && l.endsWith(`if ${on} !{ var(txn.allowed${g}) -m bool }`))).toBe(true);
    writeFileSync(options.callersMap, renderCallersMap(doc));
    const path = join(dir, "groups.cfg");
    writeFileSync(path, text);
    for (const e of proxyErrorFiles(dir)) writeFileSync(e.path, e.content);
    expect(await checkConfig(HAPROXY, path)).toBeNull();
  });

  it("picks a rule's backends by weight over rand, in order, and answers 503 for a rule without servers", () => {
    const fe = section(renderConfig(richDocument(), options), "frontend L7");
    const rule1 = "{ var(txn.fe) -m str f-1-80 } { var(txn.rule) -m int 1 }";
    expect(fe).toEqual(
      expect.arrayContaining([
        `use_backend b-1-1-0 if ${rule1} { var(txn.pick),mod(100) -m int 0:89 }`,
        `use_backend b-1-0-0 if ${rule1} { var(txn.pick),mod(100) -m int 90:99 }`,
        "use_backend d-1-80 if { var(txn.fe) -m str f-1-80 }",
      ]),
    );
    expect(fe.findIndex((l) => l.startsWith("http-request return status 503") && l.endsWith("{ var(txn.rule) -m int 2 }"))).toBeGreaterThan(0);
    // The first match wins: a rule is set only while none is.
    expect(fe).toContain('http-request set-var(txn.rule) int(1) if { var(txn.fe) -m str f-1-80 } !{ var(txn.rule) -m found } { method GET } { path_beg "/api/" }');
    expect(section(renderConfig(richDocument(), options), "backend b-2-0-0").some((l) => l.startsWith("http-request return status 503"))).toBe(true);
  });

  it("maps retry conditions, never retries a POST unless the rule says so, and bounds attempts by the request timeout", () => {
    const text = renderConfig(richDocument(), options);
    expect(section(text, "backend b-1-0-0")).toEqual(
      expect.arrayContaining([
        "source 198.18.0.1",
        "timeout server 2000",
        "retries 2",
        "retry-on 500 501 502 503 504 conn-failure empty-response junk-response response-timeout",
        "http-request disable-l7-retry if { method POST PATCH CONNECT }",
        'http-request del-header "x-debug"',
        'http-request set-header "x-route" "canary 100%%"',
        'http-request add-header "x-added" "a\\"b"',
        'http-response del-header "server"',
        'http-response set-header "x-served-by" "v2"',
        "server w-21 198.18.1.21:8080 weight 256 maxconn 2",
      ]),
    );
    const b110 = section(text, "backend b-1-1-0");
    expect(b110).toEqual(expect.arrayContaining(["retries 1", "retry-on 502 503 504", "timeout server 30000"]));
    expect(b110.some((l) => l.includes("disable-l7-retry"))).toBe(false);
    expect(section(text, "backend d-1-80")).toEqual(expect.arrayContaining(["retries 0", "retry-on none"]));
    expect(attemptsOf({ requestTimeoutMs: 9_000, backendRequestTimeoutMs: 2_000, retry: { attempts: 5, on: ["5xx"], nonIdempotent: false } })).toEqual({ perTryMs: 2_000, retries: 3 });
    expect(attemptsOf({ requestTimeoutMs: 1_000, backendRequestTimeoutMs: 400, retry: { attempts: 3, on: ["5xx"], nonIdempotent: false } })).toEqual({ perTryMs: 400, retries: 1 });
    expect(attemptsOf({ requestTimeoutMs: 1_000, backendRequestTimeoutMs: 5_000 })).toEqual({ perTryMs: 1_000, retries: 0 });
    expect(attemptsOf({ retry: { attempts: 2, on: ["reset"], nonIdempotent: false } })).toEqual({ perTryMs: 30_000, retries: 2 });
  });

  it("quotes what a route carries so HAProxy reads it back as written", () => {
    expect(quote(`/odd"$#'\\path`)).toBe(`"/odd\\"\\$\\#\\'\\\\path"`);
    expect(lines(renderConfig(richDocument(), options))).toContain(`http-request set-var(txn.rule) int(1) if { var(txn.fe) -m str f-1-80 } !{ var(txn.rule) -m found } { path -m str "/odd\\"\\$\\#\\'\\\\path" }`);
  });

  it("tells a weight-only change from a structural one", () => {
    const base = richDocument();
    const weights = richDocument();
    weights.backends[1]!.servers[0]!.weight = 3;
    const split = richDocument();
    split.frontends[0]!.rules[1]!.backends[0]!.weight = 50;
    expect(renderConfig(weights, options)).not.toBe(renderConfig(base, options));
    expect(structureOf(weights, options)).toBe(structureOf(base, options));
    expect(structureOf(split, options)).not.toBe(structureOf(base, options));
  });

  it("bounds every server of a trafficPolicy's frontend by maxConnections, and no other frontend's", () => {
    const text = renderConfig(richDocument(), options);
    for (const name of ["b-1-0-0", "b-1-1-0", "d-1-80"]) {
      const servers = section(text, `backend ${name}`).filter((l) => l.startsWith("server "));
      expect(servers.length, name).toBeGreaterThan(0);
      expect(servers.every((l) => l.endsWith(" maxconn 2")), name).toBe(true);
      expect(section(text, `backend ${name}`), name).toContain(`timeout queue ${QUEUE_TIMEOUT_MS}`);
    }
    expect(section(text, "backend d-2-8080")).toEqual(expect.not.arrayContaining([expect.stringMatching(/maxconn|timeout queue|pending/)]));
    expect(section(text, "backend d-2-8080").find((l) => l.startsWith("server "))).toBe("server w-31 198.18.1.31:9090 weight 1");
  });

  it("refuses a request that would wait past maxPendingRequests across all the frontend's backends, with 503 problem+json", () => {
    const text = renderConfig(richDocument(), options);
    const fe = section(text, "frontend L7");
    const on = "{ var(txn.fe) -m str f-1-80 }";
    // The pending count sums the queues of every backend the frontend may use, before it picks one.
    const sum = fe.filter((l) => l.includes("txn.pending") || l.includes("txn.queued"));
    expect(sum).toEqual([
      `http-request set-var(txn.pending) queue(d-1-80) if ${on}`,
      `http-request set-var(txn.queued) queue(b-1-0-0) if ${on}`,
      `http-request set-var(txn.pending) var(txn.pending),add(txn.queued) if ${on}`,
      `http-request set-var(txn.queued) queue(b-1-1-0) if ${on}`,
      `http-request set-var(txn.pending) var(txn.pending),add(txn.queued) if ${on}`,
      `http-request set-var(txn.queued) queue(b-2-0-0) if ${on}`,
      `http-request set-var(txn.pending) var(txn.pending),add(txn.queued) if ${on}`,
    ]);
    expect(fe.indexOf(sum[0]!)).toBeLessThan(fe.findIndex((l) => l.startsWith("use_backend")));
    const b = section(text, "backend b-1-1-0");
    const full = "{ var(txn.pending) -m int ge 3 } { be_conn_free le 0 } || { var(txn.excess) -m int gt 0 }";
    // The backend's own count, this request included, against its servers' connections and the limit: exact under concurrent arrivals.
    expect(b).toEqual(expect.arrayContaining(["http-request set-var(txn.capacity) nbsrv,mul(2),add(3)", "http-request set-var(txn.excess) be_conn,sub(txn.capacity)"]));
    expect(b).toContain(`http-request set-var(txn.refused) str(overflow) if ${full}`);
    const refusal = b.find((l) => l.startsWith("http-request return status 503") && l.endsWith(full))!;
    expect(refusal).toContain("content-type application/problem+json");
    expect(JSON.parse(/string '(.*)' if /.exec(refusal)![1]!)).toMatchObject({ status: 503, title: "Service Unavailable", detail: expect.stringContaining("api-limits") });
    // Before the backend's own rules: an overflow is not sent, retried or rewritten.
    expect(b.indexOf(refusal)).toBeLessThan(b.findIndex((l) => l.startsWith("http-request del-header") || l.startsWith("http-request set-header") || l.startsWith("server ")));
    // A backend without servers keeps its own answer.
    expect(section(text, "backend b-2-0-0").some((l) => l.includes("overflow"))).toBe(false);
  });

  it("rate-limits per caller identity after authorization: 429 problem+json with Retry-After past burst in burst/rate seconds", () => {
    const text = renderConfig(richDocument(), options);
    const fe = section(text, "frontend L7");
    const on = "{ var(txn.fe) -m str f-1-80 }";
    const track = fe.indexOf(`http-request track-sc0 var(txn.caller_id),sha2(256) table RATE_f-1-80 if ${on}`);
    const refuse = fe.findIndex((l) => l.startsWith("http-request return status 429"));
    const count = fe.indexOf(`http-request sc-inc-gpc0(0) if ${on}`);
    expect(track).toBeGreaterThan(fe.findLastIndex((l) => l.startsWith("http-request return status 403") && l.includes(on)));
    expect(track).toBeGreaterThan(fe.findIndex((l) => l.startsWith("http-request set-var(txn.caller_id)")));
    expect(refuse).toBeGreaterThan(track);
    expect(fe[refuse - 1]).toBe(`http-request set-var(txn.refused) str(rate-limited) if ${on} { sc0_gpc0_rate ge 5 }`);
    expect(fe[refuse]).toMatch(/^http-request return status 429 content-type application\/problem\+json hdr retry-after 3 string '.*' if \{ var\(txn.fe\) -m str f-1-80 \} \{ sc0_gpc0_rate ge 5 \}$/);
    expect(JSON.parse(/string '(.*)' if /.exec(fe[refuse]!)![1]!)).toMatchObject({ status: 429, title: "Too Many Requests" });
    // Only admitted requests count.
    expect(count).toBeGreaterThan(refuse);
    // Nothing a client sends picks the key: only the identity read from the source address.
    expect(fe.filter((l) => l.includes("track-sc"))).toHaveLength(1);
    expect(section(text, "backend RATE_f-1-80")).toEqual(["stick-table type binary len 32 size 64 expire 5000 store gpc0_rate(2500) peers WEFT"]);
    expect(text).not.toMatch(/RATE_f-2-8080/);
    // The tables go from an old worker to the new one through the local peer, a socket only root may open.
    expect(section(text, "global")).toContain("localpeer local");
    expect(section(text, "peers WEFT")).toEqual([`bind unix@${peersSocketPath(dir)} mode 600`, "server local"]);
    // Without a rate limit there is nothing to carry: no peers at all.
    const plain = richDocument();
    delete plain.frontends[0]!.traffic!.rateLimit;
    expect(renderConfig(plain, options)).not.toMatch(/peers|localpeer/);
    // The window: a bucket of burst refilled at rate per second takes burst/rate seconds to refill.
    expect(rateWindowMs({ requestsPerSecond: 2, burst: 5 })).toBe(2_500);
    expect(rateWindowMs({ requestsPerSecond: 3, burst: 1 })).toBe(334);
    expect(rateWindowMs({ requestsPerSecond: 100_000, burst: 100_000 })).toBe(1_000);
    expect([retryAfterSeconds({ requestsPerSecond: 2, burst: 5 }), retryAfterSeconds({ requestsPerSecond: 1000, burst: 1 }), retryAfterSeconds({ requestsPerSecond: 1, burst: 60 })]).toEqual([3, 1, 60]);
  });

  it.skipIf(NO_HAPROXY)("is a config HAProxy takes with every trafficPolicy field at its bounds", async () => {
    const doc = richDocument();
    doc.frontends[0]!.traffic = { policy: "edge", maxConnections: 100_000, maxPendingRequests: 0, rateLimit: { requestsPerSecond: 100_000, burst: 1 } };
    doc.frontends[1]!.traffic = { policy: "pool-only", maxConnections: 1 };
    writeFileSync(options.callersMap, renderCallersMap(doc));
    const path = join(dir, "traffic.cfg");
    writeFileSync(path, renderConfig(doc, options));
    for (const e of proxyErrorFiles(dir)) writeFileSync(e.path, e.content);
    expect(await checkConfig(HAPROXY, path)).toBeNull();
  });
});


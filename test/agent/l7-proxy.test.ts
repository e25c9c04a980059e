// SPDX-License-Identifier: Apache-2.0
// The agent drives the node's L7 proxy (issue 21) with the real HAProxy, on
// loopback: no kernel steering, so each frontend's "VIP" is 127.0.0.1 on a
// port the test binds as a plain extra listener (render.ts extraBinds), and
// callers are loopback addresses (127.0.0.0/8 is all local) the client
// binds its connections to. Proves the canary split, header match, retries,
// per-try timeout, authorization (and a forged x-weft-* header ignored),
// weights through the runtime API without a reload, a structural change
// through a reload without a failed request, a killed proxy restarted, and
// the access log as metrics and flow events.
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentMetrics } from "../../nodeagent/src/agent/metrics.ts";
import { SystemClock } from "../../nodeagent/src/flows/clock.ts";
import { FlowCollector } from "../../nodeagent/src/flows/collector.ts";
import { FlowMetrics } from "../../nodeagent/src/flows/metrics.ts";
import { FlowUploader } from "../../nodeagent/src/flows/uploader.ts";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AccessRecord } from "../../nodeagent/src/l7/access-log.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import type { L7DocumentAnswer } from "../../nodeagent/src/agent/client.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { accessEvents } from "../../nodeagent/src/l7/flows.ts";
import { serversState } from "../../nodeagent/src/l7/runtime-api.ts";
import { adminSocketPath } from "../../nodeagent/src/l7/render.ts";
import { backend, Callers, DocumentSource, freePort, loopbackDriverOptions, type Backend } from "../support/l7-loopback.ts";
import { until, untilHolds } from "../support/until.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();

const WEB = { address: "127.0.0.10", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/web" };
const ADMIN = { address: "127.0.0.11", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/admin" };
const INTRUDER = { address: "127.0.0.12", tenant: "globex", spiffeId: "spiffe://globex.test/ns/x/sa/intruder" };

const callers = new Callers();
const call = callers.call.bind(callers);

describe.skipIf(NO_HAPROXY)("the L7 proxy the agent drives (real HAProxy, loopback)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-"));
  const registry = new Registry();
  const source = new DocumentSource();
  const records: AccessRecord[] = [];
  let driver: L7Driver;
  let v1: Backend, v2: Backend, flaky: Backend, hang: Backend, echo: Backend;
  /** Frontend ports: canary (acme/api), open (acme/open, ungoverned). */
  let api: number, open: number, listen: number;

  /**
   * HAProxy behind a wrapper whose check refuses any config naming a route
   * "refused-by-haproxy" (the renderer makes no config HAProxy refuses, so
   * the test makes one).
   */
  const wrapper = join(stateDir, "haproxy-wrapper");
  writeFileSync(wrapper, `#!/bin/sh\nif [ "$1" = "-c" ] && grep -q refused-by-haproxy "$3"; then echo "[ALERT]    (1) : config : the test refuses this one" >&2; exit 1; fi\nexec ${HAPROXY} "$@"\n`);
  chmodSync(wrapper, 0o755);

  const doc = (o: { v1Weight?: number; v2Weight?: number; serverWeights?: [number, number]; extraRule?: boolean; routeName?: string } = {}): L7Document => ({
    proxyAddress: "127.0.0.1",
    frontends: [
      {
        name: "f-api",
        tenant: "acme",
        service: "api",
        vip: "127.0.0.1",
        port: api,
        rules: [
          { route: "canary", rule: 0, matches: [{ headers: [{ type: "Exact", name: "x-canary", value: "1" }] }], backends: [{ backend: "b-v2", weight: 1 }] },
          { route: "canary", rule: 1, matches: [{ path: { type: "PathPrefix", value: "/api" } }], backends: [{ backend: "b-v1", weight: o.v1Weight ?? 90 }, { backend: "b-v2", weight: o.v2Weight ?? 10 }] },
          { route: "flaky", rule: 0, matches: [{ path: { type: "PathPrefix", value: "/flaky" } }], backends: [{ backend: "b-flaky", weight: 1 }] },
          { route: "slow", rule: 0, matches: [{ path: { type: "PathPrefix", value: "/slow" } }], backends: [{ backend: "b-slow", weight: 1 }] },
          { route: "echo", rule: 0, matches: [{ path: { type: "Exact", value: "/echo" } }], backends: [{ backend: "b-echo", weight: 1 }] },
          // HAProxy expands $NAME in double quotes and ends a word at '#': the renderer's quoting must hand it back as written.
          { route: "odd", rule: 0, matches: [{ path: { type: "Exact", value: "/it's$HOME" } }], backends: [{ backend: "b-v2", weight: 1 }] },
          { route: "pair", rule: 0, matches: [{ path: { type: "PathPrefix", value: "/pair" } }], backends: [{ backend: "b-pair", weight: 1 }] },
          ...(o.extraRule ? [{ route: o.routeName ?? "new", rule: 0, matches: [{ path: { type: "PathPrefix" as const, value: "/new" } }], backends: [{ backend: "b-v2", weight: 1 }] }] : []),
        ],
        defaultBackend: "d-api",
        authorization: {
          governed: true,
          entries: [
            { action: "deny", sources: [WEB.spiffeId], methods: ["DELETE"], policy: "api-in", rule: 0 },
            { action: "allow", sources: [WEB.spiffeId], methods: ["GET", "POST"], pathPrefixes: ["/api", "/flaky", "/slow", "/echo", "/pair", "/new", "/it's$HOME"], policy: "api-in", rule: 1 },
            { action: "allow", sources: [ADMIN.spiffeId], methods: ["GET"], pathPrefixes: ["/echo"], policy: "api-in", rule: 2 },
          ],
        },
      },
      { name: "f-open", tenant: "acme", service: "open", vip: "127.0.0.1", port: open, rules: [], defaultBackend: "d-open", authorization: { governed: false, entries: [] } },
    ],
    backends: [
      { name: "b-v1", servers: [{ name: "v1", address: "127.0.0.1", port: v1.port, weight: 1 }] },
      { name: "b-v2", servers: [{ name: "v2", address: "127.0.0.1", port: v2.port, weight: 1 }] },
      { name: "b-flaky", servers: [{ name: "flaky", address: "127.0.0.1", port: flaky.port, weight: 1 }], retry: { attempts: 1, on: ["gateway-error"], nonIdempotent: false } },
      {
        name: "b-slow",
        servers: [
          { name: "hang", address: "127.0.0.1", port: hang.port, weight: 1 },
          { name: "v1", address: "127.0.0.1", port: v1.port, weight: 1 },
        ],
        backendRequestTimeoutMs: 300,
        requestTimeoutMs: 5_000,
        retry: { attempts: 2, on: ["timeout"], nonIdempotent: false },
      },
      { name: "b-echo", servers: [{ name: "echo", address: "127.0.0.1", port: echo.port, weight: 1 }], requestHeaders: { set: [{ name: "x-route", value: "echo 100%" }] } },
      {
        name: "b-pair",
        servers: [
          { name: "v1", address: "127.0.0.1", port: v1.port, weight: o.serverWeights?.[0] ?? 1 },
          { name: "v2", address: "127.0.0.1", port: v2.port, weight: o.serverWeights?.[1] ?? 1 },
        ],
      },
      { name: "d-api", servers: [{ name: "v1", address: "127.0.0.1", port: v1.port, weight: 1 }] },
      { name: "d-open", servers: [{ name: "v2", address: "127.0.0.1", port: v2.port, weight: 1 }] },
    ],
    callers: [WEB, ADMIN, INTRUDER],
  });

  const running = (etag = source.currentEtag) =>
    untilHolds(`the proxy running ${etag}`, () => driver.status(), (s) => s.state === "running" && s.appliedEtag === etag, 20_000);

  beforeAll(async () => {
    [v1, v2, flaky, hang, echo] = await Promise.all([
      backend(() => [200, "v1"]),
      backend(() => [200, "v2"]),
      backend((n) => (n % 2 === 0 ? [503, "flaky"] : [200, "ok"])),
      backend(() => "hang"),
      backend(() => [200, "echo"]),
    ]);
    [api, open, listen] = [await freePort(), await freePort(), await freePort()];
    source.set(doc());
    driver = new L7Driver(
      loopbackDriverOptions({
        binary: wrapper,
        stateDir,
        document: source.answer,
        registry,
        records: (batch) => records.push(...batch),
        listen: { address: "127.0.0.1", port: listen },
        extraBinds: [`127.0.0.1:${api}`, `127.0.0.1:${open}`],
      }),
    );
    driver.start();
    await running();
  }, 30_000);

  afterAll(async () => {
    callers.close();
    await driver?.stop();
    for (const b of [v1, v2, flaky, hang, echo]) b?.server.closeAllConnections();
    await Promise.all([v1, v2, flaky, hang, echo].map((b) => b && new Promise((r) => b.server.close(r))));
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("splits a 90/10 canary within 3 points over 1,000 requests, and a header match goes to v2 only", async () => {
    const bodies: string[] = [];
    for (let i = 0; i < 100; i++) bodies.push(...(await Promise.all(Array.from({ length: 10 }, () => call(WEB, api, { path: "/api/items" })))).map((r) => r.body));
    const v2Share = bodies.filter((b) => b === "v2").length / bodies.length;
    expect(bodies.filter((b) => b !== "v1" && b !== "v2")).toEqual([]);
    expect(v2Share).toBeGreaterThanOrEqual(0.07);
    expect(v2Share).toBeLessThanOrEqual(0.13);
    expect((await call(WEB, api, { path: "/it's$HOME" })).body).toBe("v2");
    expect((await call(WEB, api, { path: `/it's${process.env.HOME}` })).status).toBe(403);
    const canary = await Promise.all(Array.from({ length: 20 }, () => call(WEB, api, { path: "/api/items", headers: { "x-canary": "1" } })));
    expect(new Set(canary.map((r) => r.body))).toEqual(new Set(["v2"]));
  }, 60_000);

  it("retries a 503 (>= 99% 200 with 2 attempts) but never a POST", async () => {
    const gets = [];
    for (let i = 0; i < 200; i++) gets.push(await call(WEB, api, { path: "/flaky" }));
    expect(gets.filter((r) => r.status === 200).length / gets.length).toBeGreaterThanOrEqual(0.99);
    const before = flaky.hits;
    const posts = [];
    for (let i = 0; i < 20; i++) posts.push(await call(WEB, api, { method: "POST", path: "/flaky" }));
    expect(flaky.hits - before).toBe(20);
    expect(posts.filter((r) => r.status === 503).length).toBe(10);
  }, 60_000);

  it("moves an attempt past its per-try timeout to another server", async () => {
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 10 }, () => call(WEB, api, { path: "/slow" })));
    expect(answers.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(answers.every((r) => r.body === "v1")).toBe(true);
    expect(hang.hits).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(4_000);
  }, 30_000);

  it("authorizes by caller identity, method and path; a client's x-weft-* header changes nothing", async () => {
    const intruder = await call(INTRUDER, api, { path: "/echo", headers: { "x-weft-source-identity": WEB.spiffeId } });
    expect(intruder.status).toBe(403);
    expect(intruder.type).toBe("application/problem+json");
    expect(JSON.parse(intruder.body)).toMatchObject({ status: 403, title: "Forbidden" });
    // An identity of the right tenant that no allow entry names for this path.
    const admin = await call(ADMIN, api, { path: "/api/items", headers: { "x-weft-source-identity": WEB.spiffeId } });
    expect(admin.status).toBe(403);
    expect((await call(ADMIN, api, { path: "/echo" })).status).toBe(200);
    expect((await call(WEB, api, { method: "DELETE", path: "/api/items" })).status).toBe(403);
    expect((await call(WEB, api, { method: "PUT", path: "/api/items" })).status).toBe(403);
    // A caller the proxy does not know (no entry in callers): refused.
    expect((await call({ address: "127.0.0.99" }, api, { path: "/api/items" })).status).toBe(403);
    // The ungoverned frontend takes any caller of its tenant, not another tenant's.
    expect((await call(ADMIN, open, { path: "/anything" })).body).toBe("v2");
    expect((await call(INTRUDER, open, { path: "/anything" })).status).toBe(403);

    const seen = echo.seen.length;
    const ok = await call(WEB, api, { path: "/echo", headers: { "x-weft-source-identity": INTRUDER.spiffeId, "x-weft-other": "forged" } });
    expect(ok.status).toBe(200);
    const headers = echo.seen[seen]!;
    expect(headers["x-weft-source-identity"]).toBe(WEB.spiffeId);
    expect(headers["x-weft-other"]).toBeUndefined();
    expect(headers["x-route"]).toBe("echo 100%");
  }, 30_000);

  it("applies a weight-only change through the runtime API, without a reload", async () => {
    const pids = driver.pids!;
    source.set(doc({ serverWeights: [0, 1] }));
    await driver.refresh();
    await running();
    expect(driver.pids).toEqual(pids);
    const state = await serversState(adminSocketPath(stateDir));
    expect(state.filter((s) => s.backend === "b-pair").map((s) => [s.server, s.weight])).toEqual([
      ["v1", 0],
      ["v2", 1],
    ]);
    const answers = await Promise.all(Array.from({ length: 20 }, () => call(WEB, api, { path: "/pair" })));
    expect(new Set(answers.map((r) => r.body))).toEqual(new Set(["v2"]));
    // Every server at weight 0: HAProxy's own 503, as a problem.
    source.set(doc({ serverWeights: [0, 0] }));
    await driver.refresh();
    await running();
    const none = await call(WEB, api, { path: "/pair" });
    expect(none.status).toBe(503);
    expect(none.type).toBe("application/problem+json");
    expect(JSON.parse(none.body)).toMatchObject({ status: 503, detail: "no backend server is available" });
    source.set(doc({ serverWeights: [0, 1] }));
    await driver.refresh();
    await running();
    expect(driver.pids).toEqual(pids);
  }, 30_000);

  it("applies structural changes with reloads and no failed request under load", async () => {
    const before = driver.pids!;
    let stop = false;
    const failures: string[] = [];
    let done = 0;
    const loops = Array.from({ length: 4 }, async () => {
      while (!stop) {
        try {
          const r = await call(WEB, api, { path: "/api/items" });
          if (r.status !== 200) failures.push(`status ${r.status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
        done++;
      }
    });
    await until("some load", 5_000, () => (done > 50 ? true : undefined));
    // Five structural changes (a new route, then its split moved), each a reload, while the load runs.
    for (let i = 0; i < 5; i++) {
      source.set(doc({ serverWeights: [0, 1], extraRule: true, v1Weight: 50 + i, v2Weight: 50 }));
      await driver.refresh();
      await running();
    }
    const after = done;
    await until("load after the reload", 5_000, () => (done > after + 100 ? true : undefined));
    stop = true;
    await Promise.all(loops);
    expect(failures).toEqual([]);
    expect(driver.pids!.master).toBe(before.master);
    expect(driver.pids!.worker).not.toBe(before.worker);
    expect((await call(WEB, api, { path: "/new" })).body).toBe("v2");
    // Only the callers map the config reads is left.
    expect(readdirSync(stateDir).filter((f) => f.startsWith("l7-callers-"))).toHaveLength(1);
  }, 60_000);

  it("keeps serving when the document is refused, and says why", async () => {
    const held = source.currentEtag;
    const bad = doc();
    bad.backends.push({ ...bad.backends[0]! });
    source.set(bad);
    await driver.refresh();
    expect(driver.status()).toMatchObject({ state: "running", appliedEtag: held });
    expect(driver.status().detail).toMatch(/refused the L7 document: \/backends\/8\/name: backend b-v1 is named twice/);
    expect((await call(WEB, api, { path: "/api/items" })).status).toBe(200);
    source.set(doc());
    await driver.refresh();
    await running();
    expect(driver.status().detail).toBeUndefined();
  }, 30_000);

  it("serves the rest of a document one frontend spoils, and names the one it left out", async () => {
    // A row stored before the API checked header values: one service's, and every other one must still follow the API.
    const spoiled = doc({ extraRule: true });
    spoiled.backends.find((b) => b.name === "d-open")!.requestHeaders = { set: [{ name: "x-old", value: "" }] };
    source.set(spoiled);
    await driver.refresh();
    await running();
    expect(driver.status().detail).toMatch(/left out 1 L7 frontend\(s\): f-open \(tenant acme\): \/backends\/7\/requestHeaders\/set\/0\/value/);
    expect((await call(WEB, api, { path: "/new" })).body).toBe("v2");
    // Left out is closed, not open: the proxy answers for the service itself.
    const left = await call(WEB, open, { path: "/" });
    expect(left.status).toBe(503);
    expect(left.body).toMatch(/no L7 service at this address/);
    source.set(doc());
    await driver.refresh();
    await running();
    expect(driver.status().detail).toBeUndefined();
    // A kept-alive connection may get one more answer from the worker the reload retired (README, L7: reloads).
    await untilHolds("the service served again", async () => (await call(WEB, open, { path: "/" })).body, (b) => b === "v2", 5_000);
  }, 30_000);

  it("never loads a config HAProxy refuses: the proxy keeps serving the one before, and the status says why", async () => {
    const held = source.currentEtag;
    const pids = driver.pids;
    source.set(doc({ extraRule: true, routeName: "refused-by-haproxy" }));
    await driver.refresh();
    await untilHolds("the refusal reported", () => driver.status(), (s) => /the test refuses this one/.test(s.detail ?? ""), 10_000);
    expect(driver.status()).toMatchObject({ state: "running", appliedEtag: held });
    expect(driver.pids).toEqual(pids);
    expect((await call(WEB, api, { path: "/api/items" })).status).toBe(200);
    expect(registry.getSingleMetric("weft_agent_l7_applies_total")).toBeDefined();
    expect(await registry.getSingleMetricAsString("weft_agent_l7_applies_total")).toMatch(/kind="reload",result="refused"\} 1/);
    source.set(doc());
    await driver.refresh();
    await running();
    expect(driver.status().detail).toBeUndefined();
  }, 30_000);

  it("restarts a killed proxy; it is down meanwhile", async () => {
    const { master } = driver.pids!;
    process.kill(master, "SIGKILL");
    await untilHolds("the proxy down", () => driver.status().state, (s) => s === "down", 10_000, 5);
    await untilHolds("a new proxy", () => driver.pids?.master, (p) => p !== undefined && p !== master, 20_000);
    await running();
    // The killed proxy's connections are gone: the next call opens a new one.
    callers.close();
    expect((await call(WEB, api, { path: "/api/items" })).status).toBe(200);
  }, 40_000);

  it("turns every access record into metrics and flow events", async () => {
    await new Promise((r) => setTimeout(r, 500));
    records.length = 0;
    await call(WEB, api, { path: "/api/items?x=%22q%22", headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } });
    await call(INTRUDER, api, { path: "/api/items" });
    await until("two records", 5_000, () => (records.length >= 2 ? true : undefined));
    const forwarded = records.find((r) => r.status === 200)!;
    expect(forwarded).toMatchObject({ src: WEB.address, caller: WEB.spiffeId, frontend: "f-api", service: "acme/api", route: "canary/1", method: "GET", path: "/api/items", traceId: "0af7651916cd43dd8448eb211c80319c", parentSpanId: "b7ad6b7169203331", refused: "" });
    expect(forwarded.spanId).toMatch(/^[0-9a-f]{16}$/);
    const refused = records.find((r) => r.status === 403)!;
    expect(refused).toMatchObject({ retries: 0, serverPort: 0, serverAddress: "", src: INTRUDER.address, caller: INTRUDER.spiffeId, server: "<NOSRV>", refused: "forbidden" });

    const text = await registry.metrics();
    expect(text).toMatch(/weft_http_requests_total\{tenant="acme",service="api",route="canary\/1",code_class="2xx",refused=""\} [1-9]/);
    expect(text).toMatch(/weft_http_requests_total\{tenant="acme",service="api",route="",code_class="4xx",refused="forbidden"\} [1-9]/);
    // Every line HAProxy wrote was a record the agent could read (a refusal's "-" fields included).
    expect(text).toMatch(/^weft_agent_l7_unreadable_log_lines_total 0$/m);
    expect(text).toMatch(/^weft_agent_l7_dropped_log_records 0$/m);
    expect(text).toMatch(/weft_http_request_duration_seconds_count\{tenant="acme",service="api",route="canary\/1"\} [1-9]/);

    const identify = (a: string) => (a === WEB.address ? { identity: 7, tenant: 1 } : { identity: 0, tenant: 0 });
    const events = accessEvents([forwarded, refused], identify);
    expect(events[0]).toMatchObject({ hook: "l7", reason: "http-forwarded", verdict: "pass", source: { address: WEB.address, identity: 7, tenant: 1 }, destination: { address: "127.0.0.1", port: forwarded.serverPort }, originalDestination: { address: "127.0.0.1", port: api } });
    expect(events[1]).toMatchObject({ hook: "l7", reason: "http-refused", verdict: "drop", source: { address: INTRUDER.address }, destination: { address: "127.0.0.1", port: api } });
    // The flows pipeline takes them as it takes the kernel's and the transport's.
    const flowRegistry = new AgentMetrics();
    const flowMetrics = new FlowMetrics(flowRegistry.registry);
    const uploader = new FlowUploader({ send: async () => "accepted", metrics: flowMetrics, log: () => undefined });
    const collector = new FlowCollector({ source: { drain: () => [], stats: () => ({ rateLimited: 0n, ringFull: 0n }) }, clock: new SystemClock(), metrics: flowMetrics, uploader, buffer: 64, intervalMs: 60_000, log: () => undefined });
    try {
      collector.handleEvents(events, 2);
      const flowText = await flowRegistry.registry.metrics();
      expect(flowText).toMatch(/^weft_flows_total\{verdict="forwarded",reason="http-forwarded",hook="l7"\} 1$/m);
      expect(flowText).toMatch(/^weft_drops_total\{reason="http-refused"\} 1$/m);
    } finally {
      await uploader.close();
      await flowRegistry.close();
    }

    // A path longer than a record holds is cut, and the record still read.
    records.length = 0;
    await call(WEB, api, { path: `/api/${"a%22b".repeat(1_000)}` });
    await until("the long path's record", 5_000, () => (records.length >= 1 ? true : undefined));
    expect(records[0]!.path.length).toBeLessThanOrEqual(512);
    expect(records[0]!.path).toBe(`/api/${"a%22b".repeat(1_000)}`.slice(0, 512));
  }, 30_000);
});

describe.skipIf(NO_HAPROXY)("the L7 proxy while the API has no L7 document (404)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-missing-"));
  let driver: L7Driver | null = null;
  afterAll(async () => {
    await driver?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("starts no proxy before a document, says why, and gives a running one the empty document", async () => {
    let answer: L7DocumentAnswer = { kind: "missing" };
    const listen = await freePort();
    driver = new L7Driver({ binary: HAPROXY, stateDir, document: async () => answer, registry: new Registry(), pollMs: 100, listen: { address: "127.0.0.1", port: listen }, log: () => undefined });
    driver.start();
    await untilHolds("off", () => driver!.status(), (s) => s.state === "off", 5_000);
    expect(driver.status().detail).toMatch(/answered 404/);
    await new Promise((r) => setTimeout(r, 300));
    expect(driver.pids).toBeNull();

    answer = { kind: "document", etag: '"e1"', body: { proxyAddress: "127.0.0.1", frontends: [], backends: [], callers: [] } };
    await untilHolds("running e1", () => driver!.status(), (s) => s.state === "running" && s.appliedEtag === '"e1"', 20_000);
    expect(driver.status().detail).toBeUndefined();
    // Nothing is a frontend: whatever reaches the listener is refused, never passed on.
    const r = await call(WEB, listen, { path: "/" });
    expect(r.status).toBe(503);
    expect(r.type).toBe("application/problem+json");

    answer = { kind: "missing" };
    await untilHolds("the empty document applied", () => driver!.status(), (s) => s.state === "running" && s.appliedEtag === undefined && /answered 404/.test(s.detail ?? ""), 20_000);
    expect((await call(WEB, listen, { path: "/" })).status).toBe(503);
  }, 60_000);
});

describe.skipIf(NO_HAPROXY)("a proxy an earlier agent left running", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-leftover-"));
  let driver: L7Driver | null = null;
  let leftover: ReturnType<typeof spawn> | null = null;
  afterAll(async () => {
    await driver?.stop();
    leftover?.kill("SIGKILL");
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("is ended before the agent's own starts, so two never share the port", async () => {
    const listen = await freePort();
    const body = { proxyAddress: "127.0.0.1", frontends: [], backends: [], callers: [] };
    // What an agent killed with SIGKILL leaves: a master on the state directory's config and pidfile.
    const first = new L7Driver({ binary: HAPROXY, stateDir, document: async () => ({ kind: "document", etag: '"a"', body }), registry: new Registry(), listen: { address: "127.0.0.1", port: listen }, log: () => undefined });
    first.start();
    await untilHolds("the first proxy", () => first.status().state, (s) => s === "running", 20_000);
    const config = join(stateDir, "haproxy.cfg");
    leftover = spawn(HAPROXY, ["-W", "-f", config, "-p", join(stateDir, "haproxy.pid")], { stdio: "ignore" });
    await until("the leftover's pidfile", 10_000, () => (readFileSync(join(stateDir, "haproxy.pid"), "utf8").trim() === String(leftover!.pid) ? true : undefined));
    await first.stop();
    const exited = new Promise((r) => leftover!.once("exit", r));

    driver = new L7Driver({ binary: HAPROXY, stateDir, document: async () => ({ kind: "document", etag: '"b"', body }), registry: new Registry(), listen: { address: "127.0.0.1", port: listen }, log: () => undefined });
    driver.start();
    await untilHolds("the agent's proxy", () => driver!.status(), (s) => s.state === "running" && s.appliedEtag === '"b"', 20_000);
    await exited;
    expect(driver.pids!.master).not.toBe(leftover.pid);
  }, 60_000);
});

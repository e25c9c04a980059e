// SPDX-License-Identifier: Apache-2.0
// A trafficPolicy at the node's proxy (issue 21), with the real HAProxy
// the agent drives and real backends on loopback, from a hand-written
// document (no kernel: see l7-proxy.test.ts): a caller past its burst gets
// 429 with Retry-After while another, same service, is unaffected;
// requests past maxConnections wait, past maxPendingRequests are refused
// with 503; a backend failing consecutive5xx times in a row is out of
// rotation (0 requests) for its ejection time, across a reload, and comes
// back after it; at most maxEjectionPercent of the backends are out.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AccessRecord } from "../../nodeagent/src/l7/access-log.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { backend, Callers, DocumentSource, freePort, loopbackDriverOptions, type Backend } from "../support/l7-loopback.ts";
import { until, untilHolds } from "../support/until.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();

const A = { address: "127.0.0.20", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/a" };
const B = { address: "127.0.0.21", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/b" };

const BASE_EJECTION_MS = 6_000;

const callers = new Callers();
const call = callers.call.bind(callers);

describe.skipIf(NO_HAPROXY)("a trafficPolicy at the node's proxy (real HAProxy, loopback)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-traffic-"));
  const registry = new Registry();
  const source = new DocumentSource();
  const records: AccessRecord[] = [];
  let driver: L7Driver;
  let ok: Backend, gate: Backend;
  /** Backends of the ejection frontend; `failing` says which answer 503. */
  const pool: Backend[] = [];
  const failing = new Set<number>();
  /** Held requests of `gate`, released by the test. */
  const held: (() => void)[] = [];
  let rated: number, limited: number, ejecting: number, listen: number;

  /** `extra`: a route /extra to a backend section holding only that backend of the pool. */
  const doc = (extra?: number, maxPendingRequests = 1): L7Document => ({
    proxyAddress: "127.0.0.1",
    frontends: [
      {
        name: "f-rated",
        tenant: "acme",
        service: "rated",
        vip: "127.0.0.1",
        port: rated,
        rules: [],
        defaultBackend: "d-rated",
        authorization: { governed: false, entries: [] },
        traffic: { policy: "rated-limits", rateLimit: { requestsPerSecond: 2, burst: 4 } },
      },
      {
        name: "f-limited",
        tenant: "acme",
        service: "limited",
        vip: "127.0.0.1",
        port: limited,
        rules: [],
        defaultBackend: "d-limited",
        authorization: { governed: false, entries: [] },
        traffic: { policy: "limited-pool", maxConnections: 1, maxPendingRequests },
      },
      {
        name: "f-ejecting",
        tenant: "acme",
        service: "ejecting",
        vip: "127.0.0.1",
        port: ejecting,
        rules: extra !== undefined ? [{ route: "extra", rule: 0, matches: [{ path: { type: "PathPrefix", value: "/extra" } }], backends: [{ backend: "b-extra", weight: 1 }] }] : [],
        defaultBackend: "d-ejecting",
        authorization: { governed: false, entries: [] },
        traffic: { policy: "ejecting-outliers", outlier: { consecutive5xx: 5, intervalMs: 100, baseEjectionMs: BASE_EJECTION_MS, maxEjectionPercent: 25 } },
      },
    ],
    backends: [
      { name: "d-rated", servers: [{ name: "ok", address: "127.0.0.1", port: ok.port, weight: 1 }] },
      { name: "d-limited", servers: [{ name: "gate", address: "127.0.0.1", port: gate.port, weight: 1 }] },
      { name: "d-ejecting", servers: pool.map((b, i) => ({ name: `p${i}`, address: "127.0.0.1", port: b.port, weight: 1 })) },
      ...(extra !== undefined ? [{ name: "b-extra", servers: [{ name: `p${extra}`, address: "127.0.0.1", port: pool[extra]!.port, weight: 1 }] }] : []),
    ],
    callers: [A, B],
  });

  const running = (etag = source.currentEtag) => untilHolds(`the proxy running ${etag}`, () => driver.status(), (s) => s.state === "running" && s.appliedEtag === etag, 20_000);
  const metric = async (re: RegExp) => Number(re.exec(await registry.metrics())?.[1] ?? NaN);

  beforeAll(async () => {
    ok = await backend(() => [200, "ok"]);
    gate = await backend(() => new Promise((resolve) => held.push(() => resolve([200, "gate"]))));
    for (let i = 0; i < 4; i++) pool.push(await backend(() => (failing.has(i) ? [503, `p${i} failing`] : [200, `p${i}`])));
    [rated, limited, ejecting, listen] = [await freePort(), await freePort(), await freePort(), await freePort()];
    source.set(doc());
    driver = new L7Driver(
      loopbackDriverOptions({
        binary: HAPROXY,
        stateDir,
        document: source.answer,
        registry,
        records: (batch) => records.push(...batch),
        listen: { address: "127.0.0.1", port: listen },
        extraBinds: [rated, limited, ejecting].map((p) => `127.0.0.1:${p}`),
      }),
    );
    driver.start();
    await running();
  }, 30_000);

  afterAll(async () => {
    for (const release of held.splice(0)) release();
    callers.close();
    await driver?.stop();
    for (const b of [ok, gate, ...pool]) b?.server.closeAllConnections();
    await Promise.all([ok, gate, ...pool].map((b) => b && new Promise((r) => b.server.close(r))));
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("refuses a caller past its burst with 429 problem+json and Retry-After, while another caller of the same service is served", async () => {
    // 2 per second, burst 4: the window is 2 s, Retry-After 2.
    const first = [];
    for (let i = 0; i < 4; i++) first.push(await call(A, rated));
    expect(first.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    const refused = await call(A, rated);
    expect(refused.status).toBe(429);
    expect(refused.type).toBe("application/problem+json");
    expect(refused.headers["retry-after"]).toBe("2");
    expect(JSON.parse(refused.body)).toMatchObject({ type: "about:blank", status: 429, title: "Too Many Requests" });
    // Refusals do not count: a caller that keeps knocking is not held out longer.
    expect((await call(A, rated)).status).toBe(429);
    const other = [];
    for (let i = 0; i < 4; i++) other.push(await call(B, rated));
    expect(other.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect((await call(B, rated)).status).toBe(429);
    // After Retry-After the caller is served again, within its rate.
    await new Promise((r) => setTimeout(r, 2_000));
    expect((await call(A, rated)).status).toBe(200);
    const record = await until("the 429's record", 5_000, () => records.find((r) => r.frontend === "f-rated" && r.status === 429));
    expect(record).toMatchObject({ refused: "rate-limited", caller: A.spiffeId });
    expect(await metric(/^weft_http_requests_total\{tenant="acme",service="rated",route="",code_class="4xx",refused="rate-limited"\} (\d+)$/m)).toBeGreaterThanOrEqual(3);
  }, 30_000);

  it("queues requests past maxConnections and refuses those past maxPendingRequests with 503 problem+json", async () => {
    // One in flight (the gate holds it), one waiting, the third refused at once.
    const inFlight = call(A, limited);
    await until("the first request at the gate", 5_000, () => (held.length === 1 ? true : undefined));
    const waiting = call(A, limited);
    await new Promise((r) => setTimeout(r, 100));
    expect(gate.hits).toBe(1);
    const refused = await call(B, limited);
    expect(refused.status).toBe(503);
    expect(refused.type).toBe("application/problem+json");
    expect(JSON.parse(refused.body)).toMatchObject({ status: 503, detail: expect.stringContaining("limited-pool") });
    held.shift()!();
    expect((await inFlight).status).toBe(200);
    await until("the waiting request at the gate", 5_000, () => (held.length === 1 ? true : undefined));
    held.shift()!();
    expect((await waiting).status).toBe(200);
    expect(gate.hits).toBe(2);
    const record = await until("the overflow's record", 5_000, () => records.find((r) => r.frontend === "f-limited" && r.status === 503));
    expect(record.refused).toBe("overflow");

    // A request waiting longer than the queue's timeout gets 503 too, and never reaches the backend.
    const again = call(A, limited);
    await until("a request at the gate", 5_000, () => (held.length === 1 ? true : undefined));
    const queued = await call(B, limited);
    expect(queued.status).toBe(503);
    expect(queued.type).toBe("application/problem+json");
    held.shift()!();
    expect((await again).status).toBe(200);
    expect(gate.hits).toBe(3);

    // Six at once, over six connections: whatever their timing on HAProxy's threads, one is sent, one waits, four are refused at once.
    const six = Array.from({ length: 6 }, (_, i) => call(i % 2 ? A : B, limited));
    const settled: number[] = [];
    for (const p of six) void p.then((r) => settled.push(r.status));
    await until("four refusals", 5_000, () => (settled.length >= 4 ? true : undefined));
    expect(settled).toEqual([503, 503, 503, 503]);
    expect(held.length).toBe(1);
    held.shift()!();
    await until("the waiting request at the gate", 5_000, () => (held.length === 1 ? true : undefined));
    held.shift()!();
    expect((await Promise.all(six)).map((r) => r.status).sort()).toEqual([200, 200, 503, 503, 503, 503]);
    expect(gate.hits).toBe(5);

    // maxPendingRequests 0: nothing waits. A request with a free connection goes through; the next, none free, is refused at once.
    source.set(doc(undefined, 0));
    await running();
    // Kept-alive connections still reach the worker before the reload, with the limit before.
    callers.close();
    const alone = call(A, limited);
    await until("a request at the gate", 5_000, () => (held.length === 1 ? true : undefined));
    const started = Date.now();
    const none = await call(B, limited);
    expect(none.status).toBe(503);
    expect(JSON.parse(none.body)).toMatchObject({ detail: expect.stringContaining("limited-pool") });
    expect(Date.now() - started).toBeLessThan(500);
    held.shift()!();
    expect((await alone).status).toBe(200);
    expect(gate.hits).toBe(6);
    source.set(doc());
    await running();
  }, 30_000);

  it("ejects a backend failing 5 times in a row for its ejection time, at most 25% of them, across a reload, and brings it back", async () => {
    failing.add(0);
    failing.add(1);
    // Round robin over 4: 40 requests give each failing backend 10 failures in a row.
    for (let i = 0; i < 40; i++) await call(A, ejecting);
    await until("one ejection", 5_000, async () => ((await metric(/^weft_http_ejected_backends\{tenant="acme",service="ejecting"\} (\d+)$/m)) === 1 ? true : undefined));
    const ejectedAt = Date.now();
    failing.clear();
    const hits = () => pool.map((b) => b.hits);
    const before = hits();
    for (let i = 0; i < 40; i++) expect((await call(A, ejecting)).status).toBe(200);
    const during = hits().map((h, i) => h - before[i]!);
    // Exactly one of the two failing backends is out (25% of 4), and it got nothing; the other still serves.
    const out = during.flatMap((d, i) => (d === 0 ? [i] : []));
    expect(out).toHaveLength(1);
    expect([0, 1]).toContain(out[0]);
    expect(await metric(/^weft_http_outlier_ejections_total\{tenant="acme",service="ejecting"\} (\d+)$/m)).toBe(1);

    // A structural change reloads HAProxy: the ejection holds in the new worker, in every section holding the backend.
    source.set(doc(out[0]));
    await running();
    const afterReload = hits();
    for (let i = 0; i < 20; i++) await call(A, ejecting);
    for (let i = 0; i < 5; i++) expect((await call(A, ejecting, { path: "/extra" })).status).toBe(503);
    expect(hits()[out[0]!]! - afterReload[out[0]!]!).toBe(0);

    // HAProxy killed and started again by the agent: the new worker is told too.
    const { master } = driver.pids!;
    process.kill(master, "SIGKILL");
    await untilHolds("a new proxy", () => driver.pids?.master, (p) => p !== undefined && p !== master, 10_000, 20);
    await running();
    // The killed proxy's connections are gone: the next call opens a new one.
    callers.close();
    const afterRestart = hits();
    for (let i = 0; i < 20; i++) expect((await call(A, ejecting)).status).toBe(200);
    expect(hits()[out[0]!]! - afterRestart[out[0]!]!).toBe(0);
    expect(Date.now() - ejectedAt).toBeLessThan(BASE_EJECTION_MS);

    // Back after its time (6 s for a first ejection, on the next 100 ms sweep).
    await until("the ejected backend back", BASE_EJECTION_MS + 3_000, async () => {
      const h = pool[out[0]!]!.hits;
      await call(A, ejecting);
      await call(A, ejecting);
      await call(A, ejecting);
      await call(A, ejecting);
      return pool[out[0]!]!.hits > h ? true : undefined;
    });
    expect(Date.now() - ejectedAt).toBeGreaterThanOrEqual(BASE_EJECTION_MS - 500);
    expect(await metric(/^weft_http_ejected_backends\{tenant="acme",service="ejecting"\} (\d+)$/m)).toBe(0);
    source.set(doc());
    await running();
  }, 30_000);
});

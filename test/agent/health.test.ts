// SPDX-License-Identifier: Apache-2.0
/**
 * Workload health probes (nodeagent/src/agent/health.ts): the state machine
 * as a pure function, the checks the agent refuses, real TCP and HTTP probes
 * against servers on 127.0.0.1, and the prober's schedule (one probe in
 * flight per workload, transitions, stopping) with the second shrunk to a
 * few milliseconds.
 */
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server as HttpServer } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { HealthProber, healthCheckProblem, nextHealth, probe, UNKNOWN, type HealthCheck, type HealthRecord, type HealthTransition } from "../../nodeagent/src/agent/health.ts";
import { untilHolds } from "../support/until.ts";

const tcp = (port: number, over: Partial<HealthCheck> = {}): HealthCheck => ({ protocol: "tcp", port, intervalSeconds: 1, timeoutSeconds: 1, healthyThreshold: 2, unhealthyThreshold: 3, ...over });
const http = (port: number, over: Partial<HealthCheck> = {}): HealthCheck => ({ ...tcp(port), protocol: "http", path: "/healthz", expectStatus: 200, ...over });

/** Waits until `check` holds, polling every 5 ms. */
const until = (what: string, ms: number, check: () => boolean): Promise<boolean> => untilHolds(what, check, (held) => held, ms, 5);

const listening = async <S extends Server | HttpServer>(server: S): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
};
const closing = (server: Server | HttpServer): Promise<void> =>
  new Promise((resolve) => {
    (server as HttpServer).closeAllConnections?.();
    server.close(() => resolve());
  });

describe("the state machine", () => {
  const run = (results: boolean[], thresholds = { healthyThreshold: 2, unhealthyThreshold: 3 }): HealthRecord[] => {
    const out: HealthRecord[] = [];
    let h = UNKNOWN;
    results.forEach((ok, i) => out.push((h = nextHealth(h, ok, thresholds, 1000 * (i + 1)))));
    return out;
  };

  it("needs healthyThreshold successes in a row to be healthy, unhealthyThreshold failures to be unhealthy", () => {
    expect(run([true, true]).map((h) => h.state)).toEqual(["unknown", "healthy"]);
    expect(run([true, true]).at(-1)).toEqual({ state: "healthy", since: 2000, successes: 2, failures: 0 });
    // A failure between successes starts the count again.
    expect(run([true, false, true, true]).map((h) => h.state)).toEqual(["unknown", "unknown", "unknown", "healthy"]);
    const down = run([true, true, false, false, false, true]);
    expect(down.map((h) => h.state)).toEqual(["unknown", "healthy", "healthy", "healthy", "unhealthy", "unhealthy"]);
    expect(down[4]!.since).toBe(5000);
    // Staying in a state keeps the time it was entered.
    expect(run([true, true, true, true]).at(-1)!.since).toBe(2000);
  });

  it("from unknown, whichever threshold is met first", () => {
    expect(run([false], { healthyThreshold: 3, unhealthyThreshold: 1 })[0]!.state).toBe("unhealthy");
    expect(run([true], { healthyThreshold: 1, unhealthyThreshold: 10 })[0]!.state).toBe("healthy");
    expect(run([false, false, false]).at(-1)!.state).toBe("unhealthy");
  });
});

describe("checks the agent refuses", () => {
  it.each([
    [tcp(80), null],
    [http(8080), null],
    [{ ...tcp(80), protocol: "udp" }, /protocol "udp"/],
    [tcp(0), /port 0/],
    [tcp(70000), /port 70000/],
    [tcp(80, { intervalSeconds: 0 }), /intervalSeconds/],
    [tcp(80, { intervalSeconds: 2, timeoutSeconds: 3 }), /timeoutSeconds 3 .*at most intervalSeconds/],
    [tcp(80, { healthyThreshold: 11 }), /healthyThreshold/],
    [tcp(80, { unhealthyThreshold: 0 }), /unhealthyThreshold/],
    [http(80, { path: "healthz" }), /path "healthz"/],
    [http(80, { path: "/a b" }), /path/],
    [http(80, { path: "/a\r\nX: y" }), /path/],
    [http(80, { expectStatus: 99 }), /expectStatus 99/],
    [null, /not an object/],
  ])("%j", (check, problem) => {
    const p = healthCheckProblem(check);
    if (problem === null) expect(p).toBeNull();
    else expect(p).toMatch(problem);
  });
});

describe("probes against 127.0.0.1", () => {
  const servers: (Server | HttpServer)[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map(closing));
  });

  it("tcp: a connect that completes succeeds; a refused one fails with the reason", async () => {
    const server = createTcpServer((s) => s.destroy());
    servers.push(server);
    const port = await listening(server);
    expect(await probe("127.0.0.1", tcp(port), 1000)).toEqual({ ok: true });
    await closing(servers.pop()!);
    expect(await probe("127.0.0.1", tcp(port), 1000)).toEqual({ ok: false, reason: "ECONNREFUSED" });
  });

  it("http: GET path with Host = address, success only on expectStatus, a silent server times out", async () => {
    const seen: { method?: string; url?: string; headers: IncomingHttpHeaders }[] = [];
    let status = 200;
    const server = createHttpServer((req, res) => {
      seen.push({ method: req.method, url: req.url, headers: req.headers });
      if (req.url === "/hang") return; // never answers
      res.writeHead(req.url === "/healthz" ? status : 404).end("x");
    });
    servers.push(server);
    const port = await listening(server);
    expect(await probe("127.0.0.1", http(port), 1000)).toEqual({ ok: true });
    expect(seen[0]).toMatchObject({ method: "GET", url: "/healthz", headers: { host: "127.0.0.1" } });
    status = 503;
    expect(await probe("127.0.0.1", http(port), 1000)).toEqual({ ok: false, reason: "status 503, expected 200" });
    expect(await probe("127.0.0.1", http(port, { expectStatus: 503 }), 1000)).toEqual({ ok: true });
    expect(await probe("127.0.0.1", http(port, { path: "/other" }), 1000)).toEqual({ ok: false, reason: "status 404, expected 200" });
    const started = Date.now();
    expect(await probe("127.0.0.1", http(port, { path: "/hang" }), 100)).toEqual({ ok: false, reason: "no answer within 100 ms" });
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe("the prober", () => {
  const probers: HealthProber[] = [];
  const servers: HttpServer[] = [];
  afterEach(async () => {
    for (const p of probers.splice(0)) p.close();
    await Promise.all(servers.splice(0).map(closing));
  });

  /** An HTTP server whose /healthz answers `status.code`, counting requests. */
  async function target() {
    const status = { code: 200, requests: 0 };
    const server = createHttpServer((req, res) => {
      status.requests++;
      res.writeHead(status.code).end();
    });
    servers.push(server);
    return { status, port: await listening(server) };
  }

  it("goes healthy, then unhealthy when the workload stops answering, with a transition and a gauge for each", async () => {
    const { status, port } = await target();
    const transitions: HealthTransition[] = [];
    const gauges: [string, string, string | null][] = [];
    // A "second" of the check is 10 ms here.
    const prober = new HealthProber({ msPerSecond: 10, onTransition: (t) => transitions.push(t), onGauge: (...g) => gauges.push(g) });
    probers.push(prober);
    prober.update([{ tenant: "t", workload: "w", address: "127.0.0.1", check: http(port, { timeoutSeconds: 5, intervalSeconds: 5 }) }]);
    expect(prober.list()).toEqual([]);
    await until("healthy", 5_000, () => prober.stateOf("t", "w")?.state === "healthy");
    expect(prober.list()).toEqual([{ tenant: "t", workload: "w", state: "healthy", since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) }]);
    status.code = 500;
    await until("unhealthy", 5_000, () => prober.stateOf("t", "w")?.state === "unhealthy");
    expect(transitions).toEqual([
      { tenant: "t", workload: "w", from: "unknown", to: "healthy" },
      { tenant: "t", workload: "w", from: "healthy", to: "unhealthy", reason: "status 500, expected 200" },
    ]);
    expect(gauges).toEqual([
      ["t", "w", "healthy"],
      ["t", "w", "unhealthy"],
    ]);
    // Removed from the node: probing stops at once and its series goes.
    prober.update([]);
    expect(prober.list()).toEqual([]);
    expect(gauges.at(-1)).toEqual(["t", "w", null]);
    const after = status.requests;
    await new Promise((r) => setTimeout(r, 200));
    expect(status.requests).toBe(after);
  });

  it("keeps one probe in flight per workload, at the interval, and a changed check counts again from nothing", async () => {
    let inFlight = 0;
    let most = 0;
    let probes = 0;
    let answer = true;
    const prober = new HealthProber({
      msPerSecond: 10,
      random: () => 0.5,
      // Each probe takes 50 ms, five times the 10 ms interval.
      probe: async () => {
        probes++;
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 50));
        inFlight--;
        return answer ? { ok: true } : { ok: false, reason: "down" };
      },
    });
    probers.push(prober);
    const check = tcp(1, { healthyThreshold: 1, unhealthyThreshold: 2 });
    prober.update([
      { tenant: "t", workload: "a", address: "198.18.0.1", check },
      { tenant: "t", workload: "b", address: "198.18.0.2", check },
    ]);
    await new Promise((r) => setTimeout(r, 400));
    // Two workloads, each one at a time: never more than two probes together, about 400/50 each.
    expect(most).toBe(2);
    expect(probes).toBeGreaterThan(6);
    expect(probes).toBeLessThanOrEqual(2 * (400 / 50 + 1));
    expect(prober.list().map((h) => `${h.workload}:${h.state}`)).toEqual(["a:healthy", "b:healthy"]);
    // A new check keeps the state (nothing proved otherwise yet) but counts failures from zero.
    answer = false;
    prober.update([{ tenant: "t", workload: "a", address: "198.18.0.1", check: { ...check, port: 2 } }]);
    expect(prober.list().map((h) => `${h.workload}:${h.state}`)).toEqual(["a:healthy"]);
    expect(prober.stateOf("t", "a")).toMatchObject({ successes: 0, failures: 0 });
    await until("unhealthy", 5_000, () => prober.stateOf("t", "a")?.state === "unhealthy");
  });
});

// bench:l7's sidecar baseline (bench/l7/http-sidecar.ts) is only a fair
// stand-in for an Istio sidecar if it does the L7 work the node proxy does:
// it must strip the x-weft-* headers a client sets, refuse a caller its
// policy does not name (403 problem+json, with the allowed caller as
// control), tell the app who called, take part in the request's trace on
// each side, and write one JSON record per request on each side (through
// the record ring the node proxy uses). And the
// paced load of "p99 at half the saturation rate" (bench/l7/paced.ts) must
// hold the rate it was given, and say so when a path cannot keep up. In a
// namespace of its own: run under flock /tmp/weft-kernel.lock.
import { execFile, execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BenchCleanup } from "../../bench/support/cleanup.ts";
import { listening } from "../../bench/support/listening.ts";
import { inNetns, makeNetns, startDaemon } from "../../bench/support/netns.ts";
import { availability } from "../../bench/support/proxies.ts";
import { SIDECAR_INBOUND_PORT, SIDECAR_OUTBOUND_PORT, httpSidecar, type HttpSidecar } from "../../bench/l7/http-sidecar.ts";
import { paced } from "../../bench/l7/paced.ts";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";

const unavailable =
  (process.getuid?.() !== 0 ? "not running as root (network namespaces)" : null) ??
  commandUnavailableReason("haproxy", ["-v"], "apt-get install haproxy") ??
  // wrk --version exits 1: availability() knows.
  (availability().wrk ? null : "wrk not installed (apt-get install wrk)") ??
  commandUnavailableReason("curl", ["--version"], "apt-get install curl");
const skip = skipWithout("bench:l7's sidecar and paced-load tests", unavailable);

const APP_PORT = 8080;
/** An app that answers 10 ms late: at most ~100 answers a second on one connection. */
const SLOW_PORT = 8081;
const POD = "198.18.0.10";
const STRANGER = "198.18.0.11";

/** An app answering with the request's headers as JSON, and one answering the same 10 ms late. */
const APP = `const h=require("node:http");const a=(q,r)=>{r.setHeader("content-type","application/json");r.end(JSON.stringify(q.headers))};
h.createServer(a).listen(${APP_PORT},"127.0.0.1");h.createServer((q,r)=>setTimeout(()=>a(q,r),10)).listen(${SLOW_PORT},"127.0.0.1")`;

/** curl inside `ns`: status and body, or "failed (exit N)" when no answer came. */
function curl(ns: string, args: string[]): Promise<{ status: string; body: string; type: string }> {
  const argv = [...inNetns(ns), "curl", "-s", "--max-time", "5", "-w", "\n%{http_code} %{content_type}", ...args];
  return new Promise((resolve) =>
    execFile(argv[0]!, argv.slice(1), (err, stdout) => {
      if (err) return resolve({ status: `failed (exit ${(err as { code?: number }).code})`, body: "", type: "" });
      const cut = stdout.lastIndexOf("\n");
      const [status = "", type = ""] = stdout.slice(cut + 1).split(" ");
      resolve({ status, body: stdout.slice(0, cut), type });
    }),
  );
}

/** The JSON records a sidecar wrote so far (the last hundred). */
const records = (d: HttpSidecar) => d.recentRecords();

describe.skipIf(skip)("bench:l7's HTTP sidecar and paced load", () => {
  const cleanup = new BenchCleanup(`wbench-manifest-${process.pid}-l7sidecar`);
  let pod = "";
  let sidecar: HttpSidecar;

  beforeAll(async () => {
    // One pod whose sidecar's outbound goes to its own inbound, which lets only the pod's own address in.
    pod = makeNetns(cleanup, "l7sc-pod");
    for (const a of [POD, STRANGER]) execFileSync("ip", ["-n", pod, "addr", "add", `${a}/32`, "dev", "lo"]);
    await startDaemon(cleanup, "header echo app", [...inNetns(pod), process.execPath, "-e", APP], { ready: () => listening(pod, APP_PORT) && listening(pod, SLOW_PORT) });
    sidecar = await httpSidecar(cleanup, { netns: pod, podAddress: POD, appPort: APP_PORT, peerAddress: POD, allowedSources: [POD] });
  });
  afterAll(async () => {
    const errors = await cleanup.run();
    if (errors.length) throw new Error(`cleanup: ${errors.join("; ")}`);
  });

  it("carries a request through both sides, without the x-weft-* headers the client set, in the client's trace, and logs it once on each side", async () => {
    const before = sidecar.recordCount();
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const res = await curl(pod, ["-H", "x-weft-source-identity: spiffe://forged/admin", "-H", "X-Weft-Tenant: other", "-H", "x-kept: 1", "-H", `traceparent: 00-${traceId}-00f067aa0ba902b7-01`, `http://127.0.0.1:${SIDECAR_OUTBOUND_PORT}/api/items?q=1`]);
    expect(res.status).toBe("200");
    const headers = JSON.parse(res.body) as Record<string, string>;
    expect(headers["x-kept"]).toBe("1");
    expect(Object.keys(headers).filter((h) => h.startsWith("x-weft-"))).toEqual([]);
    // The inbound tells the app who called, from the connection.
    expect(headers["x-forwarded-client-cert"]).toBe(`By=spiffe://bench/pod;URI=spiffe://bench/${POD}`);
    // HAProxy writes a record when the request ends; give it a moment to reach the socket.
    for (let i = 0; i < 20 && sidecar.recordCount() < before + 2; i++) await new Promise((r) => setTimeout(r, 50));
    expect(sidecar.recordCount()).toBe(before + 2);
    const logged = records(sidecar).slice(-2);
    expect(logged.map((r) => [r.frontend, r.status, r.method, r.path]).sort()).toEqual([
      ["inbound", 200, "GET", "/api/items"],
      ["outbound", 200, "GET", "/api/items"],
    ]);
    // Each side is a span of the client's trace: the outbound's parent is the client's span, the inbound's the outbound's.
    const out = logged.find((r) => r.frontend === "outbound")!;
    const inb = logged.find((r) => r.frontend === "inbound")!;
    expect([out.traceId, inb.traceId]).toEqual([traceId, traceId]);
    expect(out.parentSpanId).toBe("00f067aa0ba902b7");
    expect(inb.parentSpanId).toBe(out.spanId);
    expect(headers.traceparent).toBe(`00-${traceId}-${String(inb.spanId)}-01`);
  });

  it("inbound: refuses a caller its policy does not name with a 403 problem; lets the named one in", async () => {
    const url = `http://${POD}:${SIDECAR_INBOUND_PORT}/`;
    const stranger = await curl(pod, ["--interface", STRANGER, url]);
    expect(stranger.status).toBe("403");
    expect(stranger.type).toBe("application/problem+json");
    expect((JSON.parse(stranger.body) as { status: number }).status).toBe(403);
    expect((await curl(pod, ["--interface", POD, url])).status).toBe("200");
  });

  it("paced load holds its rate, and flags a path that cannot keep up", async () => {
    const url = `http://127.0.0.1:${SLOW_PORT}/`;
    // One connection to a 10 ms app: 50/s fits, 1000/s cannot.
    const held = await paced(url, {}, { perSecond: 50, connections: 1, seconds: 2, exec: inNetns(pod) });
    expect(held.requestsPerSecond).toBeGreaterThan(47);
    expect(held.requestsPerSecond).toBeLessThan(53);
    expect(held.fellShort).toBe(false);
    const short = await paced(url, {}, { perSecond: 1000, connections: 1, seconds: 2, exec: inNetns(pod) });
    expect(short.requestsPerSecond).toBeLessThan(150);
    expect(short.fellShort).toBe(true);
  });
});

// SPDX-License-Identifier: Apache-2.0
// How the agent wires its L7 proxy (issue 21): --l7 and --haproxy, finding
// the binary, "off" with a reason, the state in every status report and a
// new document read after each applied datapath change, the client's GET
// /v1/nodes/{node}/l7 (ETag, 304, 404 while the API lacks the route), and
// the proxy address on lo (replaced, nothing else removed).
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AgentLoop } from "../../nodeagent/src/agent/agent.ts";
import { ApiClient, type L7Status } from "../../nodeagent/src/agent/client.ts";
import { parseArgs, UsageError } from "../../nodeagent/src/agent/config.ts";
import { AgentMetrics } from "../../nodeagent/src/agent/metrics.ts";
import { proxyThreads } from "../../nodeagent/src/l7/driver.ts";
import { findHaproxy, L7Off } from "../../nodeagent/src/l7/index.ts";
import { installProxyAddress } from "../../nodeagent/src/l7/proxy-address.ts";
import { emptyMaps, full, memoryMaps, scriptedClient } from "./scripted.ts";

const dir = mkdtempSync(join(tmpdir(), "weft-l7-wiring-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const BASE = ["--api", "http://127.0.0.1:8080", "--name", "n1"];

describe("--l7 and --haproxy", () => {
  it("runs the proxy by default; off by flag or environment; refuses anything else", () => {
    expect(parseArgs(BASE, {}).l7).toBe(true);
    expect(parseArgs([...BASE, "--l7", "off"], {}).l7).toBe(false);
    expect(parseArgs(BASE, { WEFT_L7: "off" }).l7).toBe(false);
    expect(parseArgs([...BASE, "--l7=on"], { WEFT_L7: "off" }).l7).toBe(true);
    expect(() => parseArgs([...BASE, "--l7", "maybe"], {})).toThrow(UsageError);
    expect(parseArgs([...BASE, "--haproxy", "/opt/haproxy/sbin/haproxy"], {}).haproxy).toBe("/opt/haproxy/sbin/haproxy");
    expect(parseArgs(BASE, { WEFT_HAPROXY: "/usr/local/sbin/haproxy" }).haproxy).toBe("/usr/local/sbin/haproxy");
    expect(() => parseArgs([...BASE, "--haproxy", "haproxy"], {})).toThrow(/absolute path/);
  });

  it("--otlp-endpoint (WEFT_OTLP_ENDPOINT) is off by default and takes only an http(s) URL without credentials", () => {
    expect(parseArgs(BASE, {})).not.toHaveProperty("otlpEndpoint");
    expect(parseArgs([...BASE, "--otlp-endpoint", "http://collector:4318"], {}).otlpEndpoint).toBe("http://collector:4318");
    expect(parseArgs(BASE, { WEFT_OTLP_ENDPOINT: "https://collector/v1/traces" }).otlpEndpoint).toBe("https://collector/v1/traces");
    for (const bad of ["collector:4318", "ftp://collector", "http://user:pass@collector:4318", "not a url"]) {
      expect(() => parseArgs([...BASE, "--otlp-endpoint", bad], {}), bad).toThrow(/--otlp-endpoint .* is not an http:\/\/ or https:\/\/ URL/);
    }
  });

  it("--l7-threads (WEFT_L7_THREADS) sizes the proxy: 1..64, whole numbers; absent, half the CPUs and at least one", () => {
    expect(parseArgs(BASE, {})).not.toHaveProperty("l7Threads");
    expect(parseArgs([...BASE, "--l7-threads", "3"], {}).l7Threads).toBe(3);
    expect(parseArgs(BASE, { WEFT_L7_THREADS: "64" }).l7Threads).toBe(64);
    for (const bad of ["0", "65", "1.5", "-1", "two"]) expect(() => parseArgs([...BASE, "--l7-threads", bad], {}), bad).toThrow(/--l7-threads .* is not 1\.\.64/);
    expect([1, 2, 3, 4, 64].map((cpus) => proxyThreads(cpus))).toEqual([1, 1, 1, 2, 32]);
  });

  it("finds haproxy where it is named or on the PATH, and says why when it is not there", () => {
    const bin = join(dir, "bin");
    const fake = join(bin, "haproxy");
    rmSync(bin, { recursive: true, force: true });
    expect(findHaproxy(undefined, `${bin}:/nonexistent`)).toEqual({ missing: expect.stringMatching(/no haproxy on the PATH/) });
    expect(findHaproxy(fake, "")).toEqual({ missing: expect.stringMatching(/not an executable file/) });
    writeFileSync(join(dir, "not-executable"), "");
    expect(findHaproxy(join(dir, "not-executable"), "")).toHaveProperty("missing");
    mkdirSync(bin);
    writeFileSync(fake, "#!/bin/sh\n");
    chmodSync(fake, 0o755);
    expect(findHaproxy(undefined, `/nonexistent:${bin}`)).toEqual({ binary: fake });
    expect(findHaproxy(fake, "")).toEqual({ binary: fake });
  });

  it("an agent without the proxy reports it off, with why", async () => {
    expect(new L7Off("--l7 off").status()).toEqual({ state: "off", detail: "--l7 off" });
    expect(await new L7Off("x").refresh()).toBe(false);
  });
});

describe("the status report", () => {
  async function reportWith(l7?: { status(): L7Status; errors: string[]; refresh(): Promise<boolean> }) {
    const api = scriptedClient([full(emptyMaps(), 1, "a".repeat(64))]);
    const loop = new AgentLoop({ node: "n1", client: api.client, maps: memoryMaps(), metrics: new AgentMetrics(), backoff: { initialMs: 1, maxMs: 4 }, log: () => undefined, ...(l7 ? { l7 } : {}) });
    const abort = new AbortController();
    const running = loop.run(abort.signal);
    await api.finished;
    await loop.report();
    abort.abort();
    await running;
    return { statuses: api.statuses, loop };
  }

  it("carries the proxy's state and faults, and has it read its document after each apply", async () => {
    let refreshed = 0;
    const l7 = { status: (): L7Status => ({ state: "running", appliedEtag: '"l7-9"' }), errors: ["haproxy refused the configuration: x"], refresh: async () => (refreshed++, true) };
    const { statuses, loop } = await reportWith(l7);
    expect(statuses.at(-1)!.l7).toEqual({ state: "running", appliedEtag: '"l7-9"' });
    expect(statuses.at(-1)!.errors).toContain("haproxy refused the configuration: x");
    expect(loop.readiness().ready).toBe(false);
    expect(refreshed).toBe(1);
  });

  it("says off when the agent runs no proxy", async () => {
    const { statuses } = await reportWith();
    expect(statuses.at(-1)!.l7).toEqual({ state: "off", detail: "the agent runs without an L7 proxy" });
  });
});

describe("GET /v1/nodes/{node}/l7", () => {
  it("answers the document with its ETag, 'unchanged' for the ETag held, 'missing' while the API has no route", async () => {
    const seen: { url?: string; ifNoneMatch?: string; auth?: string }[] = [];
    let routeExists = true;
    const server = createServer((req, res) => {
      seen.push({ url: req.url!, ifNoneMatch: req.headers["if-none-match"], auth: req.headers.authorization });
      if (!routeExists) return res.writeHead(404, { "content-type": "application/problem+json" }).end('{"status":404}');
      if (req.headers["if-none-match"] === '"v1"') return res.writeHead(304).end();
      res.writeHead(200, { "content-type": "application/json", etag: '"v1"' }).end('{"proxyAddress":"10.0.0.1","frontends":[],"backends":[],"callers":[]}');
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const client = new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, "cred");
      expect(await client.nodeL7("n 1", null)).toEqual({ kind: "document", etag: '"v1"', body: { proxyAddress: "10.0.0.1", frontends: [], backends: [], callers: [] } });
      expect(await client.nodeL7("n 1", '"v1"')).toEqual({ kind: "unchanged" });
      routeExists = false;
      expect(await client.nodeL7("n 1", '"v1"')).toEqual({ kind: "missing" });
      expect(seen[0]).toMatchObject({ url: "/v1/nodes/n%201/l7", auth: "Bearer cred" });
      expect(seen[1]!.ifNoneMatch).toBe('"v1"');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe("the proxy address on lo", () => {
  it("is put there as a /32, replaces the agent's earlier one, and removes nothing else", () => {
    const state = mkdtempSync(join(dir, "state-"));
    const calls: string[] = [];
    const ip = (args: string[]) => (calls.push(args.join(" ")), "");
    expect(installProxyAddress("10.42.3.1", state, ip)).toEqual({ removed: null });
    expect(calls).toEqual(["-4 addr replace 10.42.3.1/32 dev lo scope global"]);
    expect(readFileSync(join(state, "l7-proxy-address"), "utf8")).toBe("10.42.3.1\n");
    calls.length = 0;
    expect(installProxyAddress("10.42.3.1", state, ip)).toEqual({ removed: null });
    expect(calls).toEqual(["-4 addr replace 10.42.3.1/32 dev lo scope global"]);
    calls.length = 0;
    expect(installProxyAddress("10.42.7.1", state, ip)).toEqual({ removed: "10.42.3.1" });
    expect(calls).toEqual(["-4 addr replace 10.42.7.1/32 dev lo scope global", "-4 addr del 10.42.3.1/32 dev lo"]);
    expect(() => installProxyAddress("0.0.0.0", state, ip)).toThrow(/not a host address/);
    expect(() => installProxyAddress("10.0.0.1/8 dev eth0", state, ip)).toThrow(/not a host address/);
  });
});

/**
 * The agent's API endpoint set (nodeagent/src/agent/endpoints.ts) and the
 * client's failover over it, against real HTTP(S) servers on loopback:
 * order and stickiness, a move at once on a refused connection, a reset, a
 * 5xx or a timeout, a host name with several addresses (TLS checked against
 * the name), the loop's backoff only after a whole round failed, and the
 * command line's lists.
 */
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AgentLoop } from "../../nodeagent/src/agent/agent.ts";
import { fingerprintOf, resolveApiCa } from "../../nodeagent/src/agent/api-trust.ts";
import { ApiClient, ApiError } from "../../nodeagent/src/agent/client.ts";
import { MAX_API_URLS, parseArgs, UsageError } from "../../nodeagent/src/agent/config.ts";
import { EndpointSet, type Resolver } from "../../nodeagent/src/agent/endpoints.ts";
import { AgentMetrics } from "../../nodeagent/src/agent/metrics.ts";
import { ensureRegistered } from "../../nodeagent/src/agent/runtime.ts";
import { saveRegistration } from "../../nodeagent/src/agent/state.ts";
import { freePort } from "../support/api-process.ts";
import { memoryMaps } from "./scripted.ts";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A server on host:port (0: any) that records each request's path and Host header. */
async function serve(handler: Handler, host = "127.0.0.1", port = 0, server: Server = createServer()): Promise<{ url: string; port: number; hits: { path: string; host: string }[] }> {
  const hits: { path: string; host: string }[] = [];
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    hits.push({ path: req.url ?? "", host: req.headers.host ?? "" });
    handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  cleanups.push(() => new Promise((r) => (server.closeAllConnections?.(), server.close(r))));
  const p = (server.address() as AddressInfo).port;
  return { url: `${"setSecureContext" in server ? "https" : "http"}://${host}:${p}`, port: p, hits };
}

const node = (name: string): Handler => (_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ name, podCidr: null }));
const status = (code: number): Handler => (_req, res) => res.writeHead(code, { "content-type": "application/problem+json" }).end(JSON.stringify({ title: `status ${code}` }));
const reset: Handler = (req) => req.socket.destroy();
const silent: Handler = () => undefined;

/** A base URL nothing listens on. */
async function refused(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

function clientOf(urls: string[], opts: { resolve?: Resolver; caPem?: string; timeoutMs?: number } = {}) {
  const switches: string[] = [];
  const set = new EndpointSet(urls, { ...opts, onSwitch: (from, to, reason) => switches.push(`${from.index}->${to.index}: ${reason}`) });
  cleanups.push(() => set.close());
  return { set, switches, client: new ApiClient(set, "cred", fetch, opts.timeoutMs ?? 2_000) };
}

describe("the endpoint set", () => {
  it("starts at the first URL, tries the others in order after the current one, and moves only from the current one", async () => {
    const set = new EndpointSet(["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]);
    expect(set.active).toBeNull();
    const first = await set.round();
    expect(first.map((e) => e.index)).toEqual([0, 1, 2]);
    expect(set.active?.index).toBe(0);
    set.failed(first[0]!, "refused");
    expect((await set.round()).map((e) => e.index)).toEqual([1, 2, 0]);
    // A failure of 0 seen late by a concurrent call moves nothing: 1 stays current.
    set.failed(first[0]!, "refused");
    expect(set.active?.index).toBe(1);
    expect(set.switches).toBe(1);
    set.failed(first[1]!, "503");
    set.failed(first[2]!, "reset");
    expect(set.active?.index).toBe(0);
    expect(set.switches).toBe(3);
  });

  it("gives each address of a name an endpoint, keeps the current one across re-resolution, and resolves again only after a failed round", async () => {
    let answer = ["127.0.0.1", "127.0.0.2", "127.0.0.1"];
    let lookups = 0;
    const set = new EndpointSet(["http://api.weft.test:8080", "http://127.0.0.3:8080"], {
      resolve: async (host) => {
        lookups++;
        expect(host).toBe("api.weft.test");
        return answer;
      },
    });
    cleanups.push(() => set.close());
    const round = await set.round();
    expect(round.map((e) => [e.index, e.address, e.base])).toEqual([
      [0, "127.0.0.1", "http://api.weft.test:8080"],
      [1, "127.0.0.2", "http://api.weft.test:8080"],
      // An address in the URL is not resolved.
      [2, null, "http://127.0.0.3:8080"],
    ]);
    set.failed(round[0]!, "refused");
    await set.round();
    expect(lookups).toBe(1);
    answer = ["127.0.0.4", "127.0.0.2"];
    set.roundFailed();
    const again = await set.round();
    expect(lookups).toBe(2);
    // Still on .2, now index 1 of the new order; .1 is gone, .4 new.
    expect(set.active?.address).toBe("127.0.0.2");
    expect(again.map((e) => e.address)).toEqual(["127.0.0.2", null, "127.0.0.4"]);
  });

  it("keeps a name that does not resolve as an endpoint by name, failing as a request would", async () => {
    const { client, set } = clientOf(["http://api.weft.test:8080"], { resolve: async () => Promise.reject(new Error("ENOTFOUND")) });
    await expect(client.node("n1")).rejects.toMatchObject({ status: 0, message: expect.stringMatching(/ENOTFOUND|EAI_AGAIN/) });
    expect(set.all.map((e) => e.address)).toEqual([null]);
  });
});

describe("the client's failover", () => {
  it("moves on at once from a refused connection, a reset and a 5xx, and stays on the endpoint that answered", async () => {
    const dead = await refused();
    const resetting = await serve(reset);
    const failing = await serve(status(503));
    const good = await serve(node("n1"));
    const { client, set, switches } = clientOf([dead, resetting.url, failing.url, good.url]);
    expect(await client.node("n1")).toEqual({ name: "n1", podCidr: null });
    expect(set.active?.index).toBe(3);
    expect(switches).toEqual([expect.stringMatching(/^0->1: ECONNREFUSED/), expect.stringMatching(/^1->2: /), "2->3: answered 503"]);
    // Sticky: the next calls go straight to the endpoint that answered.
    await client.node("n1");
    await client.node("n1");
    expect(resetting.hits).toHaveLength(1);
    expect(failing.hits).toHaveLength(1);
    expect(good.hits).toHaveLength(3);
  });

  it("moves on from an endpoint that does not answer within the call's deadline", async () => {
    const hanging = await serve(silent);
    const good = await serve(node("n1"));
    const { client, set, switches } = clientOf([hanging.url, good.url], { timeoutMs: 300 });
    const t0 = performance.now();
    expect((await client.node("n1")).name).toBe("n1");
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(switches).toEqual(["0->1: no answer within 300 ms"]);
    expect(set.active?.index).toBe(1);
  });

  it("does not move on for an answer below 500: a 4xx is the API's word, the same on every replica", async () => {
    const forbidding = await serve(status(403));
    const good = await serve(node("n1"));
    const { client, switches } = clientOf([forbidding.url, good.url]);
    await expect(client.node("n1")).rejects.toMatchObject({ status: 403 });
    expect(switches).toEqual([]);
    expect(good.hits).toHaveLength(0);
  });

  it("fails a call only after every endpoint failed once, with the last failure", async () => {
    const a = await serve(status(502));
    const b = await serve(status(503));
    const { client, set } = clientOf([a.url, b.url]);
    await expect(client.node("n1")).rejects.toMatchObject({ status: 503 });
    expect([a.hits.length, b.hits.length]).toEqual([1, 1]);
    // The set went round: the next call starts at the first again, once each.
    expect(set.active?.index).toBe(0);
    const dead = [await refused(), await refused()];
    const both = clientOf(dead).client;
    const err = await both.node("n1").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(0);
    expect((err as ApiError).message).toMatch(/the last of 2 API endpoints: ECONNREFUSED/);
  });

  it("posts flow batches through the same set (node:http with the endpoint's pinned address)", async () => {
    const failing = await serve(status(500));
    const port = await freePort("127.0.0.2");
    const good = await serve((_req, res) => res.writeHead(202).end(), "127.0.0.2", port);
    const { client } = clientOf([failing.url, `http://flows.weft.test:${port}`], { resolve: async () => ["127.0.0.2"] });
    const batch = { batchId: "b1", lost: { kernel: 0, agent: 0 }, aggregates: [], flows: [] };
    expect(await client.postFlows("n1", batch)).toBe("accepted");
    expect(good.hits).toEqual([{ path: "/v1/nodes/n1/flows", host: `flows.weft.test:${port}` }]);
  });

  it("reaches each address of a host name in turn, keeping the name for the Host header", async () => {
    const port = await freePort("127.0.0.2");
    const first = await serve(status(503), "127.0.0.1", port);
    const second = await serve(node("n1"), "127.0.0.2", port);
    const { client, set } = clientOf([`http://api.weft.test:${port}`], { resolve: async () => ["127.0.0.1", "127.0.0.2"] });
    expect((await client.node("n1")).name).toBe("n1");
    expect(first.hits).toEqual([{ path: "/v1/nodes/n1", host: `api.weft.test:${port}` }]);
    expect(second.hits).toEqual([{ path: "/v1/nodes/n1", host: `api.weft.test:${port}` }]);
    expect(set.active?.address).toBe("127.0.0.2");
  });

  it("over https checks each address's certificate against the host name, with the CA given", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-endpoints-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    // A certificate for the name only: checked against an address it would fail.
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=api.weft.test", "-addext", "subjectAltName=DNS:api.weft.test", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")], { stdio: "ignore" });
    const tls = { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) };
    const ca = tls.cert.toString();
    const port = await freePort("127.0.0.2");
    await serve(status(503), "127.0.0.1", port, createHttpsServer(tls));
    const second = await serve(node("n1"), "127.0.0.2", port, createHttpsServer(tls));
    const { client } = clientOf([`https://api.weft.test:${port}`], { resolve: async () => ["127.0.0.1", "127.0.0.2"], caPem: ca });
    expect((await client.node("n1")).name).toBe("n1");
    expect(second.hits).toHaveLength(1);
    // The same server by address: the name check fails, and says what to do.
    const byAddress = clientOf([`https://127.0.0.2:${port}`], { caPem: ca }).client;
    await expect(byAddress.node("n1")).rejects.toMatchObject({ status: 0, message: expect.stringMatching(/ERR_TLS_CERT_ALTNAME_INVALID/) });
    // Without the CA the certificate is not trusted on any address.
    const untrusting = clientOf([`https://api.weft.test:${port}`], { resolve: async () => ["127.0.0.1", "127.0.0.2"] }).client;
    await expect(untrusting.node("n1")).rejects.toMatchObject({ message: expect.stringMatching(/not trusted/) });
  });
});

describe("start-up over several endpoints", () => {
  it("fetches the pinned CA from the first replica that serves it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-endpoints-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=weft test ca", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")], { stdio: "ignore" });
    const tls = { key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) };
    const serving = await serve((_req, res) => res.writeHead(200, { "content-type": "application/x-pem-file" }).end(tls.cert), "127.0.0.1", 0, createHttpsServer(tls));
    const down = `https://127.0.0.1:${await freePort()}`;
    const pin = fingerprintOf(new X509Certificate(tls.cert));
    const trust = await resolveApiCa({ api: down, apis: [down, serving.url], stateDir: join(dir, "state"), apiCaSha256: pin });
    expect(trust.pem).toContain("BEGIN CERTIFICATE");
    expect(trust.source).toContain(`${serving.url}/v1/system/ca`);
    // Every replica down: each failure named.
    const other = `https://127.0.0.1:${await freePort()}`;
    await expect(resolveApiCa({ api: down, apis: [down, other], stateDir: join(dir, "state2"), apiCaSha256: pin })).rejects.toThrow(/ECONNREFUSED.*ECONNREFUSED.*tried/);
  });

  it("keeps a node's registration when its API is any URL of the list, and refuses a list without it", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), "weft-endpoints-"));
    cleanups.push(() => rmSync(stateDir, { recursive: true, force: true }));
    saveRegistration(stateDir, { api: "http://b:8080", node: "n1", credential: "c", registeredAt: "" });
    const cfg = (api: string) => parseArgs(["--api", api, "--name", "n1", "--state-dir", stateDir], {});
    const unused = new ApiClient("http://127.0.0.1:9");
    expect((await ensureRegistered(cfg("http://a:8080,http://b:8080"), unused, () => undefined)).credential).toBe("c");
    await expect(ensureRegistered(cfg("http://a:8080,http://c:8080"), unused, () => undefined)).rejects.toThrow(/holds node n1 of http:\/\/b:8080/);
  });
});

describe("the loop over several endpoints", () => {
  const state = { revision: 3, hash: "a".repeat(64), maps: { ipcache: [], endpoint: [], policy: [], svc: [], lb_slot: [], backend: [], audit: [], steer: [], l7: [] } };
  const datapath: Handler = (req, res) => {
    if (req.url?.includes("/datapath")) res.writeHead(200, { "content-type": "application/json", etag: `"${state.hash}"` }).end(JSON.stringify(state));
    else if (req.url?.includes("/workloads")) res.writeHead(404).end();
    else res.writeHead(200, { "content-type": "application/json" }).end("{}");
  };

  async function runFor(urls: string[], ms: number) {
    const { client } = clientOf(urls);
    // A backoff long enough that a second round within `ms` would show.
    const loop = new AgentLoop({ node: "n1", client, maps: memoryMaps(), metrics: new AgentMetrics(), waitSeconds: 1, backoff: { initialMs: 20_000, maxMs: 20_000, random: () => 0 }, log: () => undefined });
    const abort = new AbortController();
    const running = loop.run(abort.signal);
    await new Promise((r) => setTimeout(r, ms));
    abort.abort();
    await running;
    return loop;
  }

  it("re-issues its poll on the next endpoint at once, and backs off only after a whole round failed", async () => {
    const failing = await serve(status(503));
    const good = await serve(datapath);
    const loop = await runFor([failing.url, good.url], 600);
    expect(loop.applied?.revision).toBe(3);
    const polls = (hits: { path: string }[]) => hits.filter((h) => h.path.includes("/datapath")).length;
    expect(polls(failing.hits)).toBe(1);
    // The first poll, then the long polls (wait=1) that follow it on the same endpoint.
    expect(polls(good.hits)).toBeGreaterThanOrEqual(1);

    const a = await serve(status(503));
    const b = await serve(status(502));
    const down = await runFor([a.url, b.url], 600);
    expect(down.applied).toBeNull();
    // One round (each once), then the 20 s backoff.
    expect([polls(a.hits), polls(b.hits)]).toEqual([1, 1]);
  });
});

describe("the command line's API list", () => {
  const rest = ["--name", "n1"];

  it("takes one URL or several, comma-separated, from the flag or WEFT_API", () => {
    expect(parseArgs(["--api", "http://127.0.0.1:8080/", ...rest], {})).toMatchObject({ api: "http://127.0.0.1:8080", apis: ["http://127.0.0.1:8080"] });
    expect(parseArgs(["--api", "https://a.example:8443, https://b.example:8443/,https://c.example", ...rest], {})).toMatchObject({
      api: "https://a.example:8443",
      apis: ["https://a.example:8443", "https://b.example:8443", "https://c.example"],
    });
    expect(parseArgs(rest, { WEFT_API: "http://10.0.0.1:8080,http://10.0.0.2:8080" }).apis).toEqual(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]);
    // The CA options apply to a list of https URLs.
    expect(parseArgs(["--api", "https://a:1,https://b:1", "--api-ca", "/etc/weft/ca.pem", ...rest], {}).apiCa).toBe("/etc/weft/ca.pem");
  });

  it.each([
    ["http://a:1,,http://b:1", /empty URL in its list/],
    ["http://a:1,", /empty URL in its list/],
    ["http://a:1,not a url", /"not a url" is not a URL/],
    ["http://a:1,ftp://b:1", /must be http\(s\), not ftp:/],
    ["http://a:1,https://b:1", /mixes http:\/\/ and https:\/\//],
    ["http://a:1,http://a:1/", /lists "http:\/\/a:1" twice/],
    ["http://a:1?x=1", /must be a base URL/],
    ["http://user:pw@a:1", /must be a base URL/],
    [Array.from({ length: MAX_API_URLS + 1 }, (_, i) => `http://a${i}:1`).join(","), /at most 16/],
  ])("refuses --api %j with a usage error", (api, message) => {
    const attempt = () => parseArgs(["--api", api, ...rest], {});
    expect(attempt).toThrow(UsageError);
    expect(attempt).toThrow(message);
  });

  it("refuses the CA options when any URL of the list is http", () => {
    expect(() => parseArgs(["--api", "https://a:1", "--api-ca", "/ca.pem", ...rest], { WEFT_API: "" })).not.toThrow();
    expect(() => parseArgs(rest, { WEFT_API: "https://a:1,https://b:1", WEFT_API_CA_SHA256: "ab".repeat(32) })).not.toThrow();
    expect(() => parseArgs(["--api", "https://a:1,https://b:1", "--api-ca-sha256", "ab".repeat(32), ...rest], {})).not.toThrow();
    expect(() => parseArgs(["--api", "http://a:1", "--api-ca", "/ca.pem", ...rest], {})).toThrow("--api-ca needs an https:// --api");
  });
});

describe("the endpoint metrics", () => {
  it("count switches and name the endpoint in use by its index", async () => {
    const dead = await refused();
    const good = await serve(node("n1"));
    const { client, set } = clientOf([dead, good.url]);
    const metrics = new AgentMetrics();
    metrics.watchEndpoints(set);
    expect(await metrics.registry.metrics()).not.toMatch(/weft_agent_api_endpoint_info\{/);
    await client.node("n1");
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^weft_agent_api_endpoint_switches_total 1$/m);
    expect(text).toMatch(/^weft_agent_api_endpoint_info\{index="1"\} 1$/m);
    expect(text).not.toMatch(/index="0"/);
  });
});

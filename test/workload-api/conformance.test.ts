/**
 * The SPIFFE Workload API, checked from outside: the real API (PGlite,
 * listening on 127.0.0.1), a real agent on the real kernel, workloads in
 * network namespaces with veths, and a conformance client
 * (wapi-client.cjs: @grpc/grpc-js and the published workload.proto, no
 * agent code) run as a process inside a namespace, so that the agent
 * attests that very process from the kernel.
 *
 * Written from the SPIFFE Workload API and Workload Endpoint specifications:
 * the security header, X.509-SVIDs (DER chain, PKCS#8 key, bundle) that
 * verify with `openssl verify -x509_strict`, streams that push a rotation
 * before the old SVID expires and a bundle change, JWT-SVIDs and their
 * validation, PERMISSION_DENIED for callers that are no workload, no way for
 * one workload to obtain another's SVID, and mutual TLS between two
 * workloads with their SVIDs that a third tenant's SVID cannot join.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import type { AgentConfig } from "../../nodeagent/src/agent/config.ts";
import { startAgent, uninstall, type RunningAgent } from "../../nodeagent/src/agent/runtime.ts";
import { WorkloadApiServer } from "../../nodeagent/src/workload-api/server.ts";
import { bearer, operator, startApi, tenantWithToken, uniqueName } from "../support/api.ts";
import { Cleanup, makeCgroup, makeNetns, makePinDir, makeVeth, toolsUnavailableReason } from "../support/kernel.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { until } from "../support/until.ts";
import { pastedBundle } from "../support/federation.ts";
import { routeWorkload } from "../agent/netns-traffic.ts";

const unavailable = (): string | null => toolsUnavailableReason([["ip", "-V"], ["openssl", "version"]]);
const reason = unavailable();

const CLIENT = new URL("./wapi-client.cjs", import.meta.url).pathname;
const PROTO = new URL("../../nodeagent/src/workload-api/workload.proto", import.meta.url).pathname;
/** a and b: tenant one; x: tenant two; stranger: a namespace with a veth but no workload; bare: no veth at all. */
const W = {
  a: { label: "wa", host: "198.18.11.1", addr: "198.18.11.2" },
  b: { label: "wb", host: "198.18.12.1", addr: "198.18.12.2" },
  x: { label: "wx", host: "198.18.13.1", addr: "198.18.13.2" },
  stranger: { label: "ws", host: "198.18.14.1", addr: "198.18.14.2" },
} as const;
type WName = keyof typeof W;
const TLS_PORT = 9443;

type Line = Record<string, unknown> & { error?: string; details?: string };

describe.skipIf(skipWithout("workload API conformance (root, bpf, cgroup2, iproute2, openssl)", reason))("the SPIFFE Workload API on a real agent", () => {
  const cleanup = new Cleanup();
  const node = uniqueName("node");
  let app: WeftApp;
  let dir: string;
  let socket: string;
  let agent: RunningAgent | null = null;
  let cfg: AgentConfig;
  const netns = {} as Record<WName | "bare", string>;
  let one: { tenant: string; token: string };
  let two: { tenant: string; token: string };
  const ids = {} as Record<"a" | "b" | "x", string>;

  const env = (extra: Record<string, string> = {}) => ({ ...process.env, SPIFFE_ENDPOINT_SOCKET: `unix://${socket}`, WORKLOAD_PROTO: PROTO, ...extra });
  /** Runs the client in `ns` (null: the host's namespace) and answers its JSON lines. */
  const client = (ns: string | null, args: string[], timeoutMs = 20_000): Promise<Line[]> =>
    new Promise((resolve, reject) => {
      const argv = ns === null ? [process.execPath, CLIENT, ...args] : ["ip", "netns", "exec", ns, process.execPath, CLIENT, ...args];
      execFile(argv[0]!, argv.slice(1), { env: env({ CLIENT_TIMEOUT_MS: String(timeoutMs) }), timeout: timeoutMs + 5_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`client ${args.join(" ")} in ${ns ?? "the host"}: ${stderr || err.message}`)) : resolve(stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Line)),
      );
    });
  const only = async (ns: string | null, args: string[], timeoutMs?: number): Promise<Line> => {
    const lines = await client(ns, args, timeoutMs);
    expect(lines, JSON.stringify(lines)).toHaveLength(1);
    return lines[0]!;
  };
  const rest = async (method: "PUT" | "POST", path: string, payload: unknown, as: { tenant: string; token: string }) => {
    const res = await app.inject({ method, url: `/v1/tenants/${as.tenant}${path}`, headers: bearer(as.token), payload: payload as object });
    expect(res.statusCode, `${method} ${path}: ${res.body}`).toBeLessThan(300);
    return res.json() as Record<string, unknown>;
  };
  const pems = (der: Buffer): string[] => {
    const out: string[] = [];
    for (let at = 0; at < der.length; ) {
      const c = new X509Certificate(der.subarray(at));
      out.push(c.toString());
      at += c.raw.length;
    }
    return out;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-wapi-"));
    cleanup.add("remove the test directory", () => rmSync(dir, { recursive: true, force: true }));
    socket = join(dir, "run", "agent.sock");
    const pinDir = makePinDir(cleanup, "wapi");
    cleanup.add("uninstall the agent's pins and links", () => void uninstall({ ...cfg, pinDir }));
    const cgroup = makeCgroup(cleanup, "wapi");
    for (const [name, w] of Object.entries(W) as [WName, (typeof W)[WName]][]) {
      netns[name] = makeNetns(cleanup, `wapi-${name}`);
      const veth = makeVeth(cleanup, w.label, netns[name], `${w.host}/30`, `${w.addr}/30`);
      routeWorkload(netns[name], veth.host, w.host);
    }
    netns.bare = makeNetns(cleanup, "wapi-bare");
    app = await startApi("pglite", { dataDir: join(dir, "db"), serviceCidr: "198.18.60.0/24", podCidr: "198.18.0.0/19", podCidrNodePrefix: 19 });
    await app.listen({ port: 0, host: "127.0.0.1" });
    cleanup.add("close the API", () => app.close());
    cleanup.add("stop the agent", async () => void (await agent?.stop()));
    one = await tenantWithToken(app, ["admin"]);
    two = await tenantWithToken(app, ["admin"]);
    ids.a = String((await rest("PUT", "/identities/a", { path: "/ns/wapi/a", x509SvidTtlSeconds: 60 }, one)).spiffeId);
    ids.b = String((await rest("PUT", "/identities/b", { path: "/ns/wapi/b" }, one)).spiffeId);
    ids.x = String((await rest("PUT", "/identities/x", { path: "/ns/wapi/x" }, two)).spiffeId);

    const jt = await app.inject({ method: "POST", url: "/v1/join-tokens", headers: operator, payload: {} });
    expect(jt.statusCode, jt.body).toBe(201);
    const apiPort = (app.server.address() as { port: number }).port;
    cfg = {
      command: "run", api: `http://127.0.0.1:${apiPort}`, joinToken: jt.json().token, name: node, zone: "z1", cgroup, pinDir,
      stateDir: join(dir, "state"), metricsPort: 0, hostRouting: true, lbHostTraffic: false, statusInterval: 5, workloadApiSocket: socket,
    };
    agent = await startAgent(cfg, { waitSeconds: 5, backoff: { initialMs: 50, maxMs: 400 }, bundleRefreshMs: 300, log: () => {} });
    await rest("PUT", "/workloads/a-1", { identity: "a", node, addresses: [W.a.addr] }, one);
    await rest("PUT", "/workloads/b-1", { identity: "b", node, addresses: [W.b.addr] }, one);
    await rest("PUT", "/workloads/x-1", { identity: "x", node, addresses: [W.x.addr] }, two);
    const a = agent;
    await until("the agent to hold the three SVIDs", 20_000, () =>
      [`${one.tenant}/a-1`, `${one.tenant}/b-1`, `${two.tenant}/x-1`].every((k) => a.svids.svidOf(k)) ? true : undefined,
    );
  });
  afterAll(() => cleanup.run());

  it("listens on the socket, 0777 in a 0755 directory, and writes no SVID files by default", async () => {
    expect(statSync(socket).isSocket()).toBe(true);
    // A second server on a socket that is served is refused, not swapped in.
    const second = new WorkloadApiServer({ socketPath: socket, svids: agent!.svids, client: { issueJwtSvid: () => Promise.reject(new Error("unused")) } });
    await expect(second.listen()).rejects.toThrow(/another process serves it/);
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o777);
    expect(statSync(join(dir, "run")).mode & 0o777).toBe(0o755);
    expect(() => statSync(join(dir, "state", "svids"))).toThrow();
  });

  it("FetchX509SVID: the caller's SVID, DER chain and PKCS#8 key, verifying with openssl -x509_strict against the bundle", async () => {
    const m = await only(netns.a, ["x509", "1"]);
    const svids = m.svids as { spiffe_id: string; x509_svid: string; x509_svid_key: string; bundle: string }[];
    expect(svids.map((s) => s.spiffe_id)).toEqual([ids.a]);
    const s = svids[0]!;
    const chain = pems(Buffer.from(s.x509_svid, "base64"));
    const leaf = new X509Certificate(chain[0]!);
    expect(leaf.subjectAltName).toBe(`URI:${ids.a}`);
    const key = createPrivateKey({ key: Buffer.from(s.x509_svid_key, "base64"), format: "der", type: "pkcs8" });
    expect(leaf.checkPrivateKey(key)).toBe(true);
    const bundle = pems(Buffer.from(s.bundle, "base64"));
    expect(bundle.length).toBeGreaterThanOrEqual(1);
    writeFileSync(join(dir, "a.pem"), chain.join(""));
    writeFileSync(join(dir, "bundle.pem"), bundle.join(""));
    const verified = execFileSync("openssl", ["verify", "-x509_strict", "-CAfile", join(dir, "bundle.pem"), join(dir, "a.pem")], { encoding: "utf8" });
    expect(verified.trim()).toBe(`${join(dir, "a.pem")}: OK`);
    // The bundle is the tenant's, as its public endpoint serves it.
    const published = (await app.inject({ url: `/v1/tenants/${one.tenant}/bundle.pem` })).body;
    const publishedPems = published.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
    expect(bundle.map((p) => new X509Certificate(p).fingerprint256)).toEqual(publishedPems.map((p) => new X509Certificate(p).fingerprint256));
    expect(m.federated_bundles).toEqual([]);
  });

  it("every call needs the security header `workload.spiffe.io: true` exactly: INVALID_ARGUMENT", async () => {
    expect(await only(netns.a, ["x509-noheader"])).toMatchObject({ error: "INVALID_ARGUMENT" });
    expect(await only(netns.a, ["x509-badheader"])).toMatchObject({ error: "INVALID_ARGUMENT" });
    expect(await only(netns.a, ["jwt-noheader"])).toMatchObject({ error: "INVALID_ARGUMENT" });
    // Checked before the caller is: the host's namespace without the header is INVALID_ARGUMENT too.
    expect(await only(null, ["x509-noheader"])).toMatchObject({ error: "INVALID_ARGUMENT" });
  });

  it("a process that is no workload gets PERMISSION_DENIED: the host's namespace, a namespace with a veth but no workload, one with none", async () => {
    for (const ns of [null, netns.stranger, netns.bare]) {
      for (const args of [["x509"], ["x509bundles"], ["jwtbundles"], ["jwt", "db"], ["validate", "db", "a.b.c"]]) {
        expect(await only(ns, args), `${args[0]} from ${ns ?? "the host"}`).toMatchObject({ error: "PERMISSION_DENIED" });
      }
    }
  });

  it("workload a never obtains b's SVID, whatever it sends or whichever address it takes", async () => {
    expect(await only(netns.a, ["jwt", "db", ids.b])).toMatchObject({ error: "PERMISSION_DENIED" });
    expect(await only(netns.a, ["jwt", "db", ids.x])).toMatchObject({ error: "PERMISSION_DENIED" });
    // a takes b's address inside its own namespace: the node's route to that address still leads to b's veth.
    const peer = `wp${process.pid % 100000}${W.a.label}`.slice(0, 15);
    execFileSync("ip", ["-n", netns.a, "addr", "add", `${W.b.addr}/32`, "dev", peer]);
    try {
      const m = await only(netns.a, ["x509"]);
      expect((m.svids as { spiffe_id: string }[]).map((s) => s.spiffe_id)).toEqual([ids.a]);
    } finally {
      execFileSync("ip", ["-n", netns.a, "addr", "del", `${W.b.addr}/32`, "dev", peer]);
    }
    // And each workload gets its own.
    for (const [ns, id] of [[netns.b, ids.b], [netns.x, ids.x]] as const) {
      expect(((await only(ns, ["x509"])).svids as { spiffe_id: string }[]).map((s) => s.spiffe_id)).toEqual([id]);
    }
  });

  it("FetchX509Bundles and FetchJWTBundles: the caller's trust domain, keyed by its SPIFFE ID", async () => {
    const td = `spiffe://${new URL(ids.a).host}`;
    const x = await only(netns.a, ["x509bundles"]);
    expect(Object.keys(x.bundles as object)).toEqual([td]);
    const j = await only(netns.a, ["jwtbundles"]);
    const jwks = (j.bundles as Record<string, { keys: { kid?: string; use?: string }[] }>)[td]!;
    expect(jwks.keys.length).toBeGreaterThanOrEqual(1);
    for (const k of jwks.keys) expect(k.kid).toBeTruthy();
  });

  it("federated bundles (issue #16): a bundle tenant two pastes reaches x's FetchX509SVID, FetchX509Bundles and FetchJWTBundles, and no other tenant's workload", async () => {
    const { jwks, cert } = pastedBundle("partner.example");
    await rest("PUT", "/federations/partner", { trustDomain: "partner.example", bundle: { spiffeBundle: jwks } }, two);
    const fed = "spiffe://partner.example";
    // The agent reads bundles again every 5 s.
    let x: Line = {};
    for (let i = 0; i < 40; i++) {
      x = await only(netns.x, ["x509bundles"]);
      if ((x.bundles as Record<string, string>)[fed]) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(Buffer.from((x.bundles as Record<string, string>)[fed]!, "base64").equals(cert.raw)).toBe(true);
    expect(Object.keys(x.bundles as object)).toContain(`spiffe://${new URL(ids.x).host}`);
    expect((await only(netns.x, ["x509", "1"])).federated_bundles).toEqual([fed]);
    const j = await only(netns.x, ["jwtbundles"]);
    expect((j.bundles as Record<string, { keys: { kid: string }[] }>)[fed]!.keys.map((k) => k.kid)).toEqual(["k1"]);
    // Tenant one federates with nobody: its workloads see only their own trust domain.
    expect(Object.keys((await only(netns.a, ["x509bundles"])).bundles as object)).toEqual([`spiffe://${new URL(ids.a).host}`]);
  }, 40_000);

  it("FetchWITSVID and FetchWITBundles answer UNIMPLEMENTED", async () => {
    expect(await only(netns.a, ["wit"])).toMatchObject({ error: "UNIMPLEMENTED" });
    expect(await only(netns.a, ["wit-bundles"])).toMatchObject({ error: "UNIMPLEMENTED" });
  });

  it("JWT-SVIDs: fetched for an audience, validated by another workload; wrong audience, expired and another trust domain's are INVALID_ARGUMENT", async () => {
    const fetched = await only(netns.a, ["jwt", "db,cache"]);
    const [svid] = fetched.svids as { spiffe_id: string; svid: string }[];
    expect(svid!.spiffe_id).toBe(ids.a);
    const claims = JSON.parse(Buffer.from(svid!.svid.split(".")[1]!, "base64url").toString()) as { sub: string; aud: string[] };
    expect(claims.sub).toBe(ids.a);
    expect(claims.aud).toEqual(expect.arrayContaining(["db", "cache"]));
    // With its own SPIFFE ID asked for explicitly: the same.
    expect(((await only(netns.a, ["jwt", "db", ids.a])).svids as { spiffe_id: string }[])[0]!.spiffe_id).toBe(ids.a);
    expect(await only(netns.a, ["jwt", ""])).toMatchObject({ error: "INVALID_ARGUMENT" });

    const good = await only(netns.b, ["validate", "db", svid!.svid]);
    expect(good.spiffe_id).toBe(ids.a);
    expect(JSON.stringify(good.claims)).toContain(ids.a);
    expect(await only(netns.b, ["validate", "other", svid!.svid])).toMatchObject({ error: "INVALID_ARGUMENT" });
    // Tampered: the signature no longer holds.
    const [h, p, sig] = svid!.svid.split(".");
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: ids.b })).toString("base64url")}.${sig}`;
    expect(await only(netns.b, ["validate", "db", forged])).toMatchObject({ error: "INVALID_ARGUMENT" });
    expect(p).toBeTruthy();
    // Another trust domain's JWT-SVID (x, tenant two) is not trusted by tenant one's workloads.
    const foreign = ((await only(netns.x, ["jwt", "db"])).svids as { svid: string }[])[0]!.svid;
    expect(await only(netns.a, ["validate", "db", foreign])).toMatchObject({ error: "INVALID_ARGUMENT", details: expect.stringContaining("trust domain") });
    expect((await only(netns.x, ["validate", "db", foreign])).spiffe_id).toBe(ids.x);
    // Expired: minted by the CA with a five-second life (a client process takes a good part of a second to start).
    const tenantId = String((await app.weft.directory.byName(one.tenant))!.id);
    const short = await app.weft.ca.issueJwtSvid({ tenantId, identityName: "b", spiffeId: ids.b, audience: ["db"], ttlMs: 5_000, caller: { actor: "test", requestId: "test" } });
    const fresh = await only(netns.a, ["validate", "db", short.token]);
    expect(fresh.spiffe_id, JSON.stringify(fresh)).toBe(ids.b);
    await until("the short JWT-SVID to expire", 10_000, () => (Date.now() > short.expiresAt.getTime() + 1_000 ? true : undefined));
    expect(await only(netns.a, ["validate", "db", short.token])).toMatchObject({ error: "INVALID_ARGUMENT", details: expect.stringMatching(/exp/) });
  });

  it("two workloads do mutual TLS with their SVIDs; a third with another tenant's SVID is refused", async () => {
    const tlsPath = join(dir, "tls.sock");
    const lines: Line[] = [];
    const serve = async (where: string) => {
      const server: ChildProcess = spawn("ip", ["netns", "exec", netns.b, process.execPath, CLIENT, "tls-server", where], { env: env({ CLIENT_TIMEOUT_MS: "60000" }), stdio: ["ignore", "pipe", "pipe"] });
      cleanup.add("stop the TLS server", () => void (server.exitCode === null && server.kill("SIGKILL")));
      const mine: Line[] = [];
      server.stdout!.on("data", (d: Buffer) => {
        const got = String(d).trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Line);
        mine.push(...got);
        lines.push(...got);
      });
      await until(`the TLS server in b on ${where}`, 15_000, () => mine.find((l) => l.ready));
      return server;
    };
    // Over the network, between the two namespaces, through the node's datapath.
    const tcp = await serve(String(TLS_PORT));
    const ok = await only(netns.a, ["tls-client", W.b.addr, String(TLS_PORT), ids.b]);
    expect(ok).toMatchObject({ ok: true, server: ids.b, data: `hello from ${ids.b}` });
    await until("b to log a's SPIFFE ID", 5_000, () => lines.find((l) => l.accepted === ids.a));
    tcp.kill("SIGKILL");
    // x (tenant two) could not reach b's port (the datapath keeps tenants apart), so TLS is tried over a
    // Unix socket, which crosses namespaces: x trusts only tenant two's CA and b only tenant one's.
    const unix = await serve(tlsPath);
    const refused = await only(netns.x, ["tls-client", tlsPath, "0", ids.b]);
    expect(refused.ok, JSON.stringify(refused)).toBe(false);
    // The same path with a's SVID is accepted: the refusal is about the SVID, not the transport.
    expect(await only(netns.a, ["tls-client", tlsPath, "0", ids.b])).toMatchObject({ ok: true, server: ids.b });
    // b, the server, never accepted x, whatever x's own check would have said: an x client that trusts
    // any server still cannot present an SVID b accepts (b logs the refusal).
    expect(lines.filter((l) => l.accepted).map((l) => l.accepted)).toEqual([ids.a, ids.a]);
    unix.kill("SIGKILL");
  });

  it("streams push a new bundle when the CA changes, and a new SVID before the old one expires", async () => {
    const stream = client(netns.a, ["x509", "3"], 55_000);
    await new Promise((r) => setTimeout(r, 1_000));
    // A prepared CA joins the bundle: a new full message with both, the same SVID.
    await rest("POST", "/ca/prepare", {}, one);
    const lines = await stream;
    expect(lines.every((l) => !l.error), JSON.stringify(lines)).toBe(true);
    type M = { svids: { spiffe_id: string; x509_svid: string; bundle: string }[] };
    const ms = lines as unknown as M[];
    const leafOf = (m: M) => new X509Certificate(pems(Buffer.from(m.svids[0]!.x509_svid, "base64"))[0]!);
    const cas = (m: M) => pems(Buffer.from(m.svids[0]!.bundle, "base64")).length;
    // Three full messages: the first at once; one where only the bundle grew (the prepared CA), one
    // where only the SVID changed (rotation at half of a's 60 s life), in whichever order they came.
    expect(cas(ms[2]!)).toBe(cas(ms[0]!) + 1);
    const steps = [1, 2].map((i) => ({ bundle: cas(ms[i]!) !== cas(ms[i - 1]!), svid: leafOf(ms[i]!).serialNumber !== leafOf(ms[i - 1]!).serialNumber }));
    expect(steps).toEqual(expect.arrayContaining([{ bundle: true, svid: false }, { bundle: false, svid: true }]));
    // Each new SVID came before the one it replaced expired.
    expect(Date.now()).toBeLessThan(Date.parse(leafOf(ms[0]!).validTo));
    for (const m of ms) expect(m.svids.map((s) => s.spiffe_id)).toEqual([ids.a]);
  }, 70_000);

  it("a workload that leaves the node: its open stream ends PERMISSION_DENIED, and so does its next call", async () => {
    const stream = client(netns.b, ["x509", "5"], 20_000);
    await new Promise((r) => setTimeout(r, 1_500));
    const res = await app.inject({ method: "DELETE", url: `/v1/tenants/${one.tenant}/workloads/b-1`, headers: bearer(one.token) });
    expect(res.statusCode).toBe(204);
    const lines = await stream;
    expect(lines[0]!.svids).toBeTruthy();
    expect(lines.at(-1)).toMatchObject({ error: "PERMISSION_DENIED" });
    expect(await only(netns.b, ["x509"])).toMatchObject({ error: "PERMISSION_DENIED" });
  });
});

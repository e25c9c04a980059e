// SPDX-License-Identifier: Apache-2.0
// Issue 21 attacked as a client of the node's proxy, with the real HAProxy
// on loopback (as l7-jwt.test.ts: each frontend's "VIP" a plain extra
// listener): a second token beside the one the proxy verifies, tokens and
// trace headers past any sane size, methods and trace values that would
// break the JSON access record, a caller dodging its rate limit, and a
// route's header match on a name HAProxy's argument parser reads as a
// quote. Every request gets an answer of the proxy's own (problem+json) or
// the backend's, and a record that parses.
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AccessRecord } from "../../nodeagent/src/l7/access-log.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { backend, Callers, DocumentSource, freePort, loopbackDriverOptions, type Backend } from "../support/l7-loopback.ts";
import { untilHolds } from "../support/until.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();

const WEB = { address: "127.0.0.30", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/web" };
const OTHER = { address: "127.0.0.31", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/other" };
const QUOTED_HEADER = "x'canary";
const BURST = 3;
/** Sixteen headers (more than fit one config line inline) whose values begin like HAProxy's ACL flags. */
const FLAG_HEADERS = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`x-flag-${i}`, ["-i", "--", "-m", "-foo"][i % 4]!]));

const pemOf = (k: KeyObject) => k.export({ type: "spki", format: "pem" }).toString();

/** A backend that answers once it has read the whole request body, as most applications do: counts what it answered. */
async function bodyReader(): Promise<{ server: Server; port: number; answered: number }> {
  const b = { server: createServer(), port: 0, answered: 0 };
  b.server.on("request", (req, res) => {
    req.resume();
    req.on("end", () => {
      b.answered++;
      res.end("read");
    });
  });
  await new Promise<void>((r) => b.server.listen(0, "127.0.0.1", r));
  b.port = (b.server.address() as AddressInfo).port;
  return b;
}

/** A request whose body never finishes: headers and a part of a 100-byte body, then the connection is dropped after `ms`. */
function stalledUpload(from: string, port: number, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port, localAddress: from });
    let got = "";
    s.on("data", (c) => (got += c.toString("latin1")));
    s.on("error", () => {});
    s.write("POST /upload HTTP/1.1\r\nhost: api\r\ncontent-length: 100\r\n\r\n0123456789");
    setTimeout(() => {
      s.destroy();
      resolve(got.split("\r\n")[0] ?? "");
    }, ms);
  });
}

/** One raw HTTP/1.1 exchange from `from` (what no HTTP client would send): the status line's code, 0 when the proxy closed without one. */
function raw(from: string, port: number, text: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, localAddress: from });
    let got = "";
    s.setTimeout(10_000, () => s.destroy(new Error("no answer")));
    s.on("data", (c) => (got += c.toString("latin1")));
    s.on("error", reject);
    s.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)));
    s.end(text);
  });
}

describe.skipIf(NO_HAPROXY)("the node's proxy under attack from its clients (real HAProxy, loopback)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-attack-"));
  const source = new DocumentSource();
  const callers = new Callers();
  const records: AccessRecord[] = [];
  const key = generateKeyPairSync("ec", { namedCurve: "P-256" });
  let driver: L7Driver;
  let app: Backend;
  let canary: Backend;
  let readers: Awaited<ReturnType<typeof bodyReader>>[];
  let port: number;
  let rated: number;
  let ejecting: number;

  const doc = (): L7Document => ({
    proxyAddress: "127.0.0.1",
    frontends: [
      {
        name: "f-api",
        tenant: "acme",
        service: "api",
        vip: "127.0.0.1",
        port,
        rules: [
          { route: "canary", rule: 0, matches: [{ headers: [{ type: "Exact", name: QUOTED_HEADER, value: "1" }] }], backends: [{ backend: "b-canary", weight: 1 }] },
          { route: "flags", rule: 0, matches: [{ method: "GET", headers: Object.entries(FLAG_HEADERS).map(([name, value]) => ({ type: "Exact" as const, name, value })) }], backends: [{ backend: "b-canary", weight: 1 }] },
        ],
        defaultBackend: "d-api",
        authorization: {
          governed: true,
          entries: [
            { action: "allow", pathPrefixes: ["/api"], jwt: { trustDomain: "acme.test", audiences: ["web"], claims: [{ name: "role", values: ["reader"] }] }, policy: "p", rule: 0 },
            { action: "allow", pathPrefixes: ["/open"], policy: "p", rule: 1 },
          ],
        },
      },
      {
        name: "f-rated",
        tenant: "acme",
        service: "rated",
        vip: "127.0.0.1",
        port: rated,
        rules: [],
        defaultBackend: "d-rated",
        authorization: { governed: false, entries: [] },
        traffic: { policy: "slow", rateLimit: { requestsPerSecond: 1, burst: BURST } },
      },
      {
        name: "f-ejecting",
        tenant: "acme",
        service: "uploads",
        vip: "127.0.0.1",
        port: ejecting,
        rules: [],
        defaultBackend: "d-ejecting",
        authorization: { governed: false, entries: [] },
        traffic: { policy: "eject", outlier: { consecutive5xx: 2, intervalMs: 10_000, baseEjectionMs: 60_000, maxEjectionPercent: 50 } },
      },
    ],
    backends: [
      { name: "d-api", servers: [{ name: "app", address: "127.0.0.1", port: app.port, weight: 1 }] },
      { name: "b-canary", servers: [{ name: "canary", address: "127.0.0.1", port: canary.port, weight: 1 }] },
      { name: "d-rated", servers: [{ name: "app", address: "127.0.0.1", port: app.port, weight: 1 }] },
      { name: "d-ejecting", backendRequestTimeoutMs: 300, servers: readers.map((r, i) => ({ name: `r${i}`, address: "127.0.0.1", port: r.port, weight: 1 })) },
    ],
    callers: [WEB, OTHER],
    jwks: [{ tenant: "acme", trustDomain: "acme.test", keys: [{ kid: "k1", alg: "ES256", publicKeyPem: pemOf(key.publicKey) }] }],
  });

  const now = () => Math.floor(Date.now() / 1000);
  const claims = (role: string) => ({ sub: WEB.spiffeId, aud: "web", exp: now() + 300, role });
  const sign = (payload: Record<string, unknown>) => new SignJWT(payload).setProtectedHeader({ alg: "ES256", kid: "k1", typ: "JWT" }).sign(key.privateKey);
  /** A token no key signed: alg none, claims of the attacker's choosing. */
  const unsigned = (payload: Record<string, unknown>) => `${Buffer.from(JSON.stringify({ alg: "none", kid: "k1" })).toString("base64url")}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.`;
  const api = (headers: Record<string, string>) => callers.call(WEB, port, { path: "/api/items", headers });
  const running = (etag = source.currentEtag) => untilHolds(`the proxy running ${etag}`, () => driver.status(), (s) => s.state === "running" && s.appliedEtag === etag, 20_000);
  /** The records of requests with this path (the proxy logs its first LOGGED_PATH_MAX bytes). */
  const recordsOf = (path: string, n: number) => untilHolds(`${n} records of ${path}`, () => records.filter((r) => r.path === path), (rs) => rs.length >= n, 10_000);

  beforeAll(async () => {
    app = await backend(() => [200, "app"]);
    canary = await backend(() => [200, "canary"]);
    readers = [await bodyReader(), await bodyReader()];
    [port, rated, ejecting] = [await freePort(), await freePort(), await freePort()];
    source.set(doc());
    driver = new L7Driver(
      loopbackDriverOptions({
        binary: HAPROXY,
        stateDir,
        document: source.answer,
        registry: new Registry(),
        records: (batch) => records.push(...batch),
        listen: { address: "127.0.0.1", port: await freePort() },
        extraBinds: [port, rated, ejecting].map((p) => `127.0.0.1:${p}`),
      }),
    );
    driver.start();
    await running();
  }, 30_000);

  afterAll(async () => {
    callers.close();
    await driver?.stop();
    for (const b of [app, canary, ...(readers ?? [])]) b?.server.closeAllConnections();
    await Promise.all([app, canary, ...(readers ?? [])].map((b) => b && new Promise((r) => b.server.close(r))));
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("decides on the one Authorization header a backend reads: a second header, or a second token in one, is refused", async () => {
    const reader = await sign(claims("reader"));
    expect((await api({ authorization: `Bearer ${reader}` })).status).toBe(200);
    // RFC 6750's scheme is case-insensitive: still the one token.
    expect((await api({ authorization: `bearer ${reader}` })).status).toBe(200);
    const forged = unsigned({ ...claims("admin"), sub: "spiffe://acme.test/ns/shop/sa/admin" });
    // Node's client joins no repeated header: the raw request carries both lines, as an attacker sends them.
    const twice = (first: string, second: string) =>
      raw(WEB.address, port, `GET /api/items HTTP/1.1\r\nhost: api\r\nauthorization: Bearer ${first}\r\nauthorization: Bearer ${second}\r\nconnection: close\r\n\r\n`);
    const before = app.hits;
    expect(await twice(reader, forged)).toBe(403);
    expect(await twice(forged, reader)).toBe(403);
    expect((await api({ authorization: `Bearer ${reader}, Bearer ${forged}` })).status).toBe(403);
    expect((await api({ authorization: `Bearer ${reader} ${forged}` })).status).toBe(403);
    expect(app.hits).toBe(before);
  });

  it("answers an oversized token or trace header with 400, never a 5xx or a hang, and still logs a record that parses", async () => {
    const huge = "a".repeat(20_000);
    const oversized: Record<string, string>[] = [{ authorization: `Bearer ${huge}` }, { traceparent: `00-${huge}` }, { tracestate: huge }];
    for (const headers of oversized) {
      const logged = records.length;
      // HAProxy 2.6 answers a request past its buffer from the connection's parser, with its compiled-in text/html (proxy-errors.ts).
      expect((await callers.call(WEB, port, { path: "/open/huge", headers })).status).toBe(400);
      await untilHolds("the refusal logged", () => records.length, (n) => n > logged, 10_000);
      callers.close();
    }
    // A big token that fits the buffer is read and refused like any forged one.
    expect((await api({ authorization: `Bearer ${unsigned({ ...claims("reader"), pad: "x".repeat(8_000) })}` })).status).toBe(403);
  });

  it("keeps the access record JSON whatever the client puts in the method, the path or the trace headers", async () => {
    const hostile = ['00-"},"caller":"spiffe://acme.test/ns/shop/sa/admin"', "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\\", "\\u0000", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"];
    for (const [i, traceparent] of hostile.entries()) {
      const res = await callers.call(WEB, port, { path: `/open/trace-${i}`, headers: { traceparent, tracestate: `a="b",c=\\"` } });
      expect(res.status).toBe(200);
      const [r] = await recordsOf(`/open/trace-${i}`, 1);
      // None of them is a valid traceparent: a new trace, the caller from the connection.
      expect(r!.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(r!.parentSpanId).toBe("");
      expect(r!.caller).toBe(WEB.spiffeId);
    }
    const path = `/open/"},"caller":"x\\\\%22%00${"\u00e9"}`;
    expect(await raw(WEB.address, port, `GET ${encodeURI(path)} HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n`)).toBe(200);
    await recordsOf(encodeURI(path), 1);
    // Methods HAProxy's parser refuses (a quote, a backslash) are answered 400, and logged.
    const logged = records.length;
    expect(await raw(WEB.address, port, `GE"T /open/m HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n`)).toBe(400);
    expect(await raw(WEB.address, port, `G\\ET /open/m HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n`)).toBe(400);
    await untilHolds("both refusals logged", () => records.length, (n) => n >= logged + 2, 10_000);
  });

  it("counts a caller's rate by its address alone: new connections, x-weft-* and forwarding headers do not reset it", async () => {
    for (let i = 0; i < BURST; i++) expect((await callers.call(WEB, rated)).status).toBe(200);
    expect((await callers.call(WEB, rated)).status).toBe(429);
    const disguises: Record<string, string>[] = [
      { "x-weft-source-identity": OTHER.spiffeId },
      { "x-forwarded-for": OTHER.address, forwarded: `for=${OTHER.address}`, "x-real-ip": OTHER.address },
      { authorization: `Bearer ${await sign(claims("reader"))}` },
    ];
    for (const headers of disguises) {
      callers.close();
      const res = await callers.call(WEB, rated, { headers });
      expect(res.status, JSON.stringify(headers)).toBe(429);
    }
    expect(await raw(WEB.address, rated, `GET / HTTP/1.1\r\nhost: rated\r\nx-weft-caller: ${OTHER.spiffeId}\r\nconnection: close\r\n\r\n`)).toBe(429);
    // Another caller still has its own burst.
    expect((await callers.call(OTHER, rated)).status).toBe(200);
  });

  it("routes by a header match whose name holds a quote (a token may), and only by it", async () => {
    const hits = canary.hits;
    expect((await callers.call(WEB, port, { path: "/open/x", headers: { [QUOTED_HEADER]: "1" } })).body).toBe("canary");
    expect((await callers.call(WEB, port, { path: "/open/x", headers: { [QUOTED_HEADER]: "2" } })).body).toBe("app");
    expect((await callers.call(WEB, port, { path: "/open/x", headers: { xcanary: "1" } })).body).toBe("app");
    expect(canary.hits).toBe(hits + 1);
  });

  it("never blames a backend for a caller that holds back its request body: no 504, no ejection of a healthy backend", async () => {
    // Each backend would see two in a row: enough to eject one of them, were the caller's stall counted as theirs.
    const answers = await Promise.all(Array.from({ length: 4 }, () => stalledUpload(WEB.address, ejecting, 1_000)));
    for (const a of answers) expect(a).not.toMatch(/^HTTP\/1\.1 5/);
    await recordsOf("/upload", 4);
    expect(records.filter((r) => r.path === "/upload" && r.status >= 500)).toEqual([]);
    const before = readers.map((r) => r.answered);
    for (let i = 0; i < 8; i++) expect((await callers.call(OTHER, ejecting, { method: "POST", path: "/after" })).status).toBe(200);
    // Round robin over both: neither was ejected.
    expect(readers.map((r, i) => r.answered - before[i]!)).toEqual([4, 4]);
  });

  it("routes by sixteen headers at once, values beginning with '-' matched as written", async () => {
    expect((await callers.call(WEB, port, { path: "/open/f", headers: FLAG_HEADERS })).body).toBe("canary");
    // "-i" is a value, not the case-insensitive flag: "-I" does not match it.
    expect((await callers.call(WEB, port, { path: "/open/f", headers: { ...FLAG_HEADERS, "x-flag-0": "-I" } })).body).toBe("app");
    const { "x-flag-15": _, ...fifteen } = FLAG_HEADERS;
    expect((await callers.call(WEB, port, { path: "/open/f", headers: fifteen })).body).toBe("app");
  });

  it("tells the backend the caller the connection names, whatever case or repetition the client's x-weft-* headers take", async () => {
    const seen = app.seen.length;
    const spoof = ["X-Weft-Source-Identity", "X-WEFT-SOURCE-IDENTITY", "x-weft-source-identity"].map((h) => `${h}: ${OTHER.spiffeId}\r\n`).join("");
    expect(await raw(WEB.address, port, `GET /open/who HTTP/1.1\r\nhost: api\r\n${spoof}connection: close\r\n\r\n`)).toBe(200);
    expect(app.seen.slice(seen).map((h) => h["x-weft-source-identity"])).toEqual([WEB.spiffeId]);
  });
});

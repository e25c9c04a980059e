// SPDX-License-Identifier: Apache-2.0
// L7 authorization by JWT (issue 21) with the real HAProxy, on loopback (as
// l7-proxy.test.ts: no kernel, each frontend's "VIP" a plain extra
// listener): a hand-made document whose jwks holds keys generated here, and
// real tokens signed with them. A valid token passes; a forged one (another
// key under a listed kid, alg none, a flipped signature bit), an expired or
// not-yet-valid one, a wrong audience or claim, a missing token, a token of
// another trust domain: 403 problem+json. Claim values with quotes, spaces,
// backslashes and '$' reach HAProxy as written; a client's x-weft-* header
// changes nothing; a key rotated out stops verifying and its file goes.
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT, type JWTPayload } from "jose";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkL7Document, type L7Document } from "../../nodeagent/src/l7/document.ts";
import { checkConfig } from "../../nodeagent/src/l7/haproxy-process.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { ARRAY_ITEMS_READ, jwtKeyFileName, jwtKeyFiles } from "../../nodeagent/src/l7/jwt-render.ts";
import { proxyErrorFiles } from "../../nodeagent/src/l7/proxy-errors.ts";
import { quote, renderConfig } from "../../nodeagent/src/l7/render.ts";
import { backend, Callers, DocumentSource, freePort, loopbackDriverOptions, type Backend } from "../support/l7-loopback.ts";
import { untilHolds } from "../support/until.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();

const WEB = { address: "127.0.0.20", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/web" };
const ADMIN = { address: "127.0.0.21", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/admin" };
const ODD_TEAM = `a "b" \\ $HOME #x 'y'`;

const ecKey = () => generateKeyPairSync("ec", { namedCurve: "P-256" });
const pemOf = (k: KeyObject) => k.export({ type: "spki", format: "pem" }).toString();

describe.skipIf(NO_HAPROXY)("L7 authorization by JWT (real HAProxy, loopback)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-jwt-"));
  const source = new DocumentSource();
  const callers = new Callers();
  const [k1, k2, other, stranger] = [ecKey(), ecKey(), ecKey(), ecKey()];
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
  let driver: L7Driver;
  let app: Backend;
  let port: number;

  const doc = (o: { acmeKeys?: { kid: string; key: KeyObject }[] } = {}): L7Document => ({
    proxyAddress: "127.0.0.1",
    frontends: [
      {
        name: "f-api",
        tenant: "acme",
        service: "api",
        vip: "127.0.0.1",
        port,
        rules: [],
        defaultBackend: "d-api",
        authorization: {
          governed: true,
          entries: [
            { action: "deny", pathPrefixes: ["/api"], jwt: { trustDomain: "acme.test", audiences: ["web"], claims: [{ name: "role", values: ["banned"] }] }, policy: "p", rule: 0 },
            {
              action: "allow",
              sources: [WEB.spiffeId],
              methods: ["GET"],
              pathPrefixes: ["/api"],
              jwt: { trustDomain: "acme.test", audiences: ["web", "web 2"], claims: [{ name: "team", values: [ODD_TEAM, "ops team"] }] },
              policy: "p",
              rule: 1,
            },
            { action: "allow", pathPrefixes: ["/other"], jwt: { trustDomain: "other.test", audiences: ["web"], claims: [] }, policy: "p", rule: 2 },
            { action: "allow", pathPrefixes: ["/health"], policy: "p", rule: 3 },
            { action: "allow", pathPrefixes: ["/mixed"], jwt: { trustDomain: "mixed.test", audiences: ["web"], claims: [] }, policy: "p", rule: 4 },
          ],
        },
      },
    ],
    backends: [{ name: "d-api", servers: [{ name: "app", address: "127.0.0.1", port: app.port, weight: 1 }] }],
    callers: [WEB, ADMIN],
    jwks: [
      { tenant: "acme", trustDomain: "acme.test", keys: (o.acmeKeys ?? [{ kid: "k1", key: k1.publicKey }, { kid: "k2", key: k2.publicKey }]).map((k) => ({ kid: k.kid, alg: "ES256" as const, publicKeyPem: pemOf(k.key) })) },
      { tenant: "acme", trustDomain: "other.test", keys: [{ kid: "o1", alg: "ES256", publicKeyPem: pemOf(other.publicKey) }] },
      {
        tenant: "acme",
        trustDomain: "mixed.test",
        keys: [
          { kid: "r1", alg: "RS256", publicKeyPem: pemOf(rsa.publicKey) },
          { kid: "p384", alg: "ES384", publicKeyPem: pemOf(p384.publicKey) },
        ],
      },
    ],
  });

  const now = () => Math.floor(Date.now() / 1000);
  const good = (): JWTPayload & Record<string, unknown> => ({ sub: WEB.spiffeId, aud: ["web"], exp: now() + 300, iat: now(), team: ODD_TEAM });
  const sign = (payload: Record<string, unknown>, key: KeyObject = k1.privateKey, kid = "k1") => new SignJWT(payload).setProtectedHeader({ alg: "ES256", kid, typ: "JWT" }).sign(key);
  const get = (token: string | null, o: { caller?: { address: string }; path?: string; headers?: Record<string, string> } = {}) =>
    callers.call(o.caller ?? WEB, port, { path: o.path ?? "/api/items", headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...o.headers } });
  const refused = async (token: string | null, o: Parameters<typeof get>[1] = {}) => {
    const res = await get(token, o);
    expect(res.status, res.body).toBe(403);
    expect(res.type).toBe("application/problem+json");
    expect(JSON.parse(res.body)).toMatchObject({ status: 403, title: "Forbidden" });
    return JSON.parse(res.body) as { detail: string };
  };
  const running = (etag = source.currentEtag) => untilHolds(`the proxy running ${etag}`, () => driver.status(), (s) => s.state === "running" && s.appliedEtag === etag, 20_000);

  beforeAll(async () => {
    app = await backend(() => [200, "app"]);
    port = await freePort();
    source.set(doc());
    driver = new L7Driver(
      loopbackDriverOptions({ binary: HAPROXY, stateDir, document: source.answer, registry: new Registry(), listen: { address: "127.0.0.1", port: await freePort() }, extraBinds: [`127.0.0.1:${port}`] }),
    );
    driver.start();
    await running();
  }, 30_000);

  afterAll(async () => {
    callers.close();
    await driver?.stop();
    app?.server.closeAllConnections();
    await new Promise((r) => app?.server.close(r));
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("passes a valid token of the named trust domain: aud and claims as strings or arrays, any key of the trust domain", async () => {
    expect((await get(await sign(good()))).status).toBe(200);
    expect((await get(await sign({ ...good(), aud: "web" }))).status).toBe(200);
    expect((await get(await sign({ ...good(), aud: ["x", "y", "web 2"], team: ["nobody", "ops team"], nbf: now() - 10 }))).status).toBe(200);
    expect((await get(await sign(good(), k2.privateKey, "k2"))).status).toBe(200);
    // The last array element read still counts.
    expect((await get(await sign({ ...good(), aud: [...Array.from({ length: ARRAY_ITEMS_READ - 1 }, (_, i) => `a${i}`), "web"] }))).status).toBe(200);
  });

  it("refuses a forged token: another key under a listed kid, alg none, a flipped signature bit, a kid it does not list", async () => {
    await refused(await sign(good(), stranger.privateKey, "k1"));
    const [h, p] = (await sign(good())).split(".");
    const none = `${Buffer.from(JSON.stringify({ alg: "none", kid: "k1", typ: "JWT" })).toString("base64url")}.${p}.`;
    await refused(none);
    const token = await sign(good());
    const sig = Buffer.from(token.split(".")[2]!, "base64url");
    sig[10]! ^= 0x01;
    await refused(`${h}.${p}.${sig.toString("base64url")}`);
    // k1's signature presented under k2's kid: the kid picks the key, and that key does not verify it.
    await refused(await sign(good(), k1.privateKey, "k2"));
    await refused(await sign(good(), stranger.privateKey, "unknown"));
  });

  it("refuses an expired, not-yet-valid or timeless token", async () => {
    await refused(await sign({ ...good(), exp: now() - 5 }));
    await refused(await sign({ ...good(), nbf: now() + 120 }));
    const { exp: _exp, ...timeless } = good();
    await refused(await sign(timeless));
    await refused(await sign({ ...good(), nbf: "soon" }));
    await refused(await sign({ ...good(), exp: String(now() + 300) + "x" }));
    expect((await get(await sign({ ...good(), nbf: now() - 1, exp: now() + 60.5 }))).status).toBe(200);
  });

  it("refuses a wrong audience or claim, an array holding neither, one past what is read, and a missing claim", async () => {
    await refused(await sign({ ...good(), aud: "api" }));
    await refused(await sign({ ...good(), aud: ["api", "webx", "we"] }));
    await refused(await sign({ ...good(), aud: [...Array.from({ length: ARRAY_ITEMS_READ }, (_, i) => `a${i}`), "web"] }));
    await refused(await sign({ ...good(), aud: `["web"]` }));
    // The quoted value exactly: '$HOME' is not expanded, the quotes and backslash are literal.
    await refused(await sign({ ...good(), team: ODD_TEAM.replace("$HOME", process.env.HOME ?? "/root") }));
    await refused(await sign({ ...good(), team: ODD_TEAM.replace("\\", "") }));
    await refused(await sign({ ...good(), team: "ops" }));
    const { team: _team, ...teamless } = good();
    await refused(await sign(teamless));
  });

  it("refuses a missing or malformed token, and a token of another trust domain", async () => {
    await refused(null);
    await refused("not-a-jwt");
    await refused(null, { headers: { authorization: "Basic d2ViOndlYg==" } });
    // Signed by other.test's key, for other.test: not the acme.test entry's.
    await refused(await sign({ ...good(), sub: "spiffe://other.test/ns/shop/sa/web" }, other.privateKey, "o1"));
    // Signed by acme's key with a sub in another trust domain.
    await refused(await sign({ ...good(), sub: "spiffe://other.test/ns/shop/sa/web" }));
    await refused(await sign({ ...good(), sub: "spiffe://acme.testx/web" }));
    // other.test's entry takes other.test's tokens only.
    expect((await get(await sign({ ...good(), sub: "spiffe://other.test/w" }, other.privateKey, "o1"), { path: "/other" })).status).toBe(200);
    await refused(await sign({ ...good(), sub: "spiffe://other.test/w" }), { path: "/other" });
    // The control: a path no JWT governs needs none.
    expect((await get(null, { path: "/health" })).status).toBe(200);
  });

  it("denies by a deny entry's JWT, and a client's x-weft-* header changes nothing", async () => {
    const denied = await refused(await sign({ ...good(), role: "banned" }));
    expect(denied.detail).toContain("policy p rule 0 denies");
    // A valid token does not make another caller the allowed one: identity comes from the connection.
    await refused(await sign(good()), { caller: ADMIN, headers: { "x-weft-source-identity": WEB.spiffeId } });
    expect((await get(await sign(good()), { headers: { "x-weft-source-identity": ADMIN.spiffeId, "x-weft-jwt": "ok" } })).status).toBe(200);
    const seen = app.seen.at(-1)!;
    expect(seen["x-weft-source-identity"]).toBe(WEB.spiffeId);
    expect(seen["x-weft-jwt"]).toBeUndefined();
  });

  it("verifies RS256 and ES384 keys by their own alg, and never a token whose header names another", async () => {
    const mixed = { ...good(), sub: "spiffe://mixed.test/w" };
    const signed = (alg: string, key: KeyObject, kid: string) => new SignJWT(mixed).setProtectedHeader({ alg, kid }).sign(key);
    expect((await get(await signed("RS256", rsa.privateKey, "r1"), { path: "/mixed" })).status).toBe(200);
    expect((await get(await signed("ES384", p384.privateKey, "p384"), { path: "/mixed" })).status).toBe(200);
    // The RSA key's kid with another RSA alg, the P-384 key's kid with ES256's alg name, and keys swapped between kids.
    await refused(await signed("RS384", rsa.privateKey, "r1"), { path: "/mixed" });
    await refused(await signed("PS256", rsa.privateKey, "r1"), { path: "/mixed" });
    await refused(await signed("ES384", p384.privateKey, "r1"), { path: "/mixed" });
    await refused(await signed("RS256", rsa.privateKey, "p384"), { path: "/mixed" });
  });

  it("stops verifying a key rotated out, takes one rotated in, and keeps only the key files it reads", async () => {
    const k3 = ecKey();
    source.set(doc({ acmeKeys: [{ kid: "k2", key: k2.publicKey }, { kid: "k3", key: k3.publicKey }] }));
    await running();
    // A kept-alive connection gets one more answer from the old worker (a hitless reload): new connections only.
    callers.close();
    await refused(await sign(good()));
    expect((await get(await sign(good(), k3.privateKey, "k3"))).status).toBe(200);
    expect((await get(await sign(good(), k2.privateKey, "k2"))).status).toBe(200);
    const files = readdirSync(stateDir).filter((f) => f.startsWith("l7-jwk-")).sort();
    const wanted = [
      ...[k2.publicKey, k3.publicKey, other.publicKey].map((k) => jwtKeyFileName("ES256", pemOf(k))),
      jwtKeyFileName("RS256", pemOf(rsa.publicKey)),
      jwtKeyFileName("ES384", pemOf(p384.publicKey)),
    ].sort();
    expect(files).toEqual(wanted);
    expect(existsSync(join(stateDir, jwtKeyFileName("ES256", pemOf(k1.publicKey))))).toBe(false);
  }, 30_000);
});

describe("the JWT checks in haproxy.cfg", () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-l7-jwt-render-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const key = pemOf(ecKey().publicKey);
  const nasty = `q"uo'te \\back$HOME #hash \${X} -m str`;
  const base = (values: string[], kid = nasty): L7Document => ({
    proxyAddress: "127.0.0.1",
    frontends: [
      {
        name: "f",
        tenant: "acme",
        service: "api",
        vip: "127.0.0.1",
        port: 8080,
        rules: [],
        defaultBackend: "d",
        authorization: { governed: true, entries: [{ action: "allow", jwt: { trustDomain: "acme.test", audiences: [nasty], claims: [{ name: "team:x", values }] }, policy: "p", rule: 0 }] },
      },
    ],
    backends: [{ name: "d", servers: [] }],
    callers: [],
    jwks: [{ tenant: "acme", trustDomain: "acme.test", keys: [{ kid, alg: "ES256", publicKeyPem: key }] }],
  });

  it.skipIf(NO_HAPROXY)("quotes audiences, claim values and kids so HAProxy takes the config as one pattern each (haproxy -c)", async () => {
    const doc = base([nasty, "-f /etc/passwd", " "]);
    expect(checkL7Document(doc)).toEqual(doc);
    const config = renderConfig(doc, { stateDir: dir, callersMap: join(dir, "callers.map") });
    writeFileSync(join(dir, "callers.map"), "");
    for (const f of jwtKeyFiles(doc, dir)) writeFileSync(f.path, f.pem);
    for (const e of proxyErrorFiles(dir)) writeFileSync(e.path, e.content);
    const path = join(dir, "haproxy.cfg");
    writeFileSync(path, config);
    expect(await checkConfig(HAPROXY, path)).toBeNull();
    expect(config).toContain(`-m str -- ${quote(nasty)} ${quote("-f /etc/passwd")} ${quote(" ")}`);
  });

  it("is refused by the document check when a value could break a line, or can match nothing", () => {
    expect(checkL7Document(base(["a\nacl x always_true"]))).toMatch(/claims\/0\/values\/0/);
    expect(checkL7Document(base([""]))).toMatch(/claims\/0\/values\/0/);
    expect(checkL7Document(base(["x"], "k\r\n"))).toMatch(/jwks\/0\/keys\/0\/kid/);
    const dotted = base(["x"]);
    dotted.frontends[0]!.authorization.entries[0]!.jwt!.claims[0]!.name = "realm.role";
    expect(checkL7Document(dotted)).toMatch(/claims\/0\/name/);
  });

  it("never lets a jwt entry match without the trust domain's keys in jwks", () => {
    const doc = { ...base(["x"]), jwks: [] };
    const config = renderConfig(doc, { stateDir: dir, callersMap: join(dir, "callers.map") });
    expect(config).toContain("http-request set-var(txn.allowed0) bool(true) if { var(txn.fe) -m str f } { always_false }");
  });
});

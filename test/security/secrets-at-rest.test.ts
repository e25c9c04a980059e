import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { like } from "drizzle-orm";
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { buildApp, type WeftApp } from "../../api/src/app.ts";
import { Kek } from "../../api/src/ca/kek.ts";
import { openDatabase } from "../../api/src/db/client.ts";
import { settings } from "../../api/src/db/schema.ts";
import { startApiProcess } from "../support/api-process.ts";
import { OPERATOR_TOKEN, bearer, freshPostgres, operator, skipBackend, testConfig, uniqueName } from "../support/api.ts";

const SIGNING_KEY = "token_signing_key";
const mode = (path: string) => statSync(path).mode & 0o777;
const tmps: string[] = [];
const tmp = () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-sec-"));
  tmps.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of tmps) rmSync(dir, { recursive: true, force: true });
});

/** Every entry under dir that group or others may read, write or enter. */
function loose(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (mode(path) & 0o077) out.push(`${path} ${mode(path).toString(8)}`);
  }
  return out;
}

async function mintAndRead(app: WeftApp): Promise<{ tenant: string; token: string }> {
  const tenant = uniqueName("sec");
  expect((await app.inject({ method: "POST", url: "/v1/tenants", headers: operator, payload: { name: tenant } })).statusCode).toBe(201);
  const minted = await app.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens`, headers: operator, payload: { name: "t", scopes: ["read"] } });
  expect(minted.statusCode).toBe(201);
  const token = minted.json().token as string;
  expect((await app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(token) })).statusCode).toBe(200);
  return { tenant, token };
}

/** The signing key's settings row, as anyone reading the database (or a backup) without the KEK sees it: exactly one, sealed. */
async function signingRow(app: WeftApp): Promise<Record<string, unknown>> {
  const rows = await app.weft.db.select().from(settings).where(like(settings.key, `${SIGNING_KEY}%`));
  for (const row of rows) {
    expect(row.value).not.toHaveProperty("d");
    expect(JSON.stringify(row.value)).not.toMatch(/"d"\s*:/);
  }
  expect(rows).toHaveLength(1);
  return rows[0]!.value as Record<string, unknown>;
}

/** A plain private JWK as versions before sealing stored it. */
async function legacyJwk() {
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: crypto.randomUUID() };
}

describe("the token signing key at rest", () => {
  it("is sealed under the KEK: the settings row does not reveal the private key, and it opens again after a restart", async () => {
    const home = tmp();
    const dataDir = join(home, "srv", ".weft", "data");
    const config = testConfig("pglite", { dataDir });
    const first = await buildApp(config);
    const { tenant, token } = await mintAndRead(first);
    const value = await signingRow(first);
    expect(value).not.toHaveProperty("d");
    expect(JSON.stringify(value)).not.toMatch(/"d"\s*:/);
    await first.close();

    const second = await buildApp(config);
    expect((await second.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(token) })).statusCode).toBe(200);
    await second.close();
    // The same database under another KEK cannot use the key: that replica signs with its own, and its tokens only.
    const stranger = await buildApp({ ...config, kek: new Kek(randomBytes(32)) });
    expect((await stranger.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(token) })).statusCode).toBe(401);
    const [own] = await stranger.weft.db.select().from(settings).where(like(settings.key, `${SIGNING_KEY}%`));
    expect(JSON.stringify(own!.value)).not.toMatch(/"d"\s*:/);
    await stranger.close();
  });

  it("retires an existing plain JWK on start: a fresh sealed key signs, and the plain key forges nothing, even with a real row", async () => {
    const dataDir = join(tmp(), "data");
    const config = testConfig("pglite", { dataDir });
    const jwk = await legacyJwk();
    const database = openDatabase(config);
    await database.migrate();
    await database.db.insert(settings).values({ key: SIGNING_KEY, value: jwk });
    await database.close();

    const app = await buildApp(config);
    const value = await signingRow(app);
    expect(value).not.toHaveProperty("d");
    expect(value.kid).not.toBe(jwk.kid);
    const { tenant, token } = await mintAndRead(app);
    expect(decodeProtectedHeader(token).kid).toBe(value.kid);
    // Whoever kept a backup holds the plain key and can read api_tokens: the
    // same claims as a live row's, signed with the retired key, are refused.
    const forged = await new SignJWT(decodeJwt(token))
      .setProtectedHeader({ alg: "ES256", kid: jwk.kid, typ: "JWT" })
      .sign(await importJWK(jwk, "ES256"));
    expect((await app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(forged) })).statusCode).toBe(401);
    expect((await app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(token) })).statusCode).toBe(200);
    await app.close();
  });

  describe.skipIf(skipBackend("postgres"))("on a fresh Postgres", () => {
    it("retires a plain JWK once when several replicas start at once, and all of them share the new key", async () => {
      const fresh = await freshPostgres("weft_sec");
      try {
        const config = testConfig("postgres", { databaseUrl: fresh.url, kek: new Kek(randomBytes(32)) });
        const database = openDatabase(config);
        await database.migrate();
        const jwk = await legacyJwk();
        await database.db.insert(settings).values({ key: SIGNING_KEY, value: jwk });
        await database.close();

        const apps = await Promise.all([buildApp(config), buildApp(config), buildApp(config)]);
        try {
          const value = await signingRow(apps[0]!);
          expect(value).not.toHaveProperty("d");
          expect(value.kid).not.toBe(jwk.kid);
          const { tenant, token } = await mintAndRead(apps[0]!);
          for (const app of apps) expect((await app.inject({ url: `/v1/tenants/${tenant}`, headers: bearer(token) })).statusCode).toBe(200);
        } finally {
          await Promise.all(apps.map((app) => app.close()));
        }
      } finally {
        await fresh.drop();
      }
    });
  });
});

describe("file modes", () => {
  it("creates the data directory, .weft/ and the KEK's directory 0700 and the KEK file 0600", async () => {
    const home = tmp();
    chmodSync(home, 0o755);
    const weft = join(home, ".weft");
    const dataDir = join(weft, "data");
    const app = await buildApp(testConfig("pglite", { dataDir }));
    await mintAndRead(app);
    await app.close();
    expect(mode(weft).toString(8)).toBe("700");
    expect(mode(dataDir).toString(8)).toBe("700");
    expect(mode(join(weft, "kek")).toString(8)).toBe("600");
  });

  it("tightens an existing world-readable data directory on start", async () => {
    const home = tmp();
    const dataDir = join(home, "data");
    const first = await buildApp(testConfig("pglite", { dataDir }));
    await first.close();
    chmodSync(dataDir, 0o755);
    mkdirSync(join(dataDir, "extra"), { mode: 0o755 });
    writeFileSync(join(dataDir, "extra", "file"), "x", { mode: 0o644 });
    chmodSync(join(dataDir, "extra", "file"), 0o644);
    const second = await buildApp(testConfig("pglite", { dataDir }));
    await second.close();
    expect(mode(dataDir).toString(8)).toBe("700");
    expect(loose(dataDir)).toEqual([]);
  });

  it("leaves nothing readable by others in a data directory the server process creates", async () => {
    const home = tmp();
    const dataDir = join(home, ".weft", "data");
    const api = await startApiProcess({ WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, WEFT_DATA_DIR: dataDir, DATABASE_URL: "" });
    try {
      const res = await fetch(`${api.base}/v1/tenants`, { method: "POST", headers: { ...operator, "content-type": "application/json" }, body: JSON.stringify({ name: "acme" }) });
      expect(res.status, api.output()).toBe(201);
    } finally {
      await api.stop();
    }
    expect(loose(join(home, ".weft"))).toEqual([]);
    expect(mode(join(home, ".weft")).toString(8)).toBe("700");
  }, 90_000);
});

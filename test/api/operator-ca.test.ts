// The operator CA (WEFT_TLS=self) is kept as the token signing key is: one
// settings row per KEK, shared by the replicas holding that KEK, its private
// key sealed. Checked in process on both backends.
import { randomBytes, X509Certificate } from "node:crypto";
import { like } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { buildApp } from "../../api/src/app.ts";
import { Kek } from "../../api/src/ca/kek.ts";
import { settings } from "../../api/src/db/schema.ts";
import { openDatabase } from "../../api/src/db/client.ts";
import type { TlsConfig } from "../../api/src/config.ts";
import { BACKENDS, backendDatabase, freshPostgres, skipBackend, testConfig } from "../support/api.ts";

const tls: TlsConfig = { source: "self", sans: [{ type: "dns", value: "localhost" }], certTtlSeconds: 3600 };

describe.each(BACKENDS)("the operator CA on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`on ${backendDatabase(backend)}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const c of cleanups.reverse()) await c();
    });

    it("is one root for every replica of a KEK, sealed at rest; another KEK gets another root", async () => {
      // A database of its own: the settings table is platform-wide.
      const pg = backend === "postgres" ? await freshPostgres("weft_opca") : undefined;
      if (pg) cleanups.push(pg.drop);
      const kek = new Kek(randomBytes(32));
      const config = testConfig(backend, { kek, tls, ...(pg ? { databaseUrl: pg.url } : {}) });
      const shared = backend === "pglite" ? openDatabase(config) : undefined;
      if (shared) cleanups.push(() => shared.close());
      const opts = shared ? { database: shared } : {};
      const a = await buildApp(config, opts);
      const b = await buildApp(config, opts);
      const other = await buildApp({ ...config, kek: new Kek(randomBytes(32)) }, opts);
      cleanups.push(async () => {
        await a.close();
        await b.close();
        await other.close();
      });

      const root = a.weft.servingTls!.operatorCa!;
      expect(b.weft.servingTls!.operatorCa!.certPem).toBe(root.certPem);
      expect(other.weft.servingTls!.operatorCa!.certPem).not.toBe(root.certPem);
      // Each replica's serving certificate is its own, chaining to the shared root.
      const leafA = new X509Certificate(a.weft.servingTls!.keyPair.cert);
      const leafB = new X509Certificate(b.weft.servingTls!.keyPair.cert);
      expect(leafA.serialNumber).not.toBe(leafB.serialNumber);
      expect(leafB.checkIssued(new X509Certificate(root.certPem))).toBe(true);

      const rows = await a.weft.db.select().from(settings).where(like(settings.key, "operator_ca/%"));
      expect(rows).toHaveLength(2);
      for (const row of rows) {
        const value = row.value as Record<string, string>;
        expect(Object.keys(value).sort()).toEqual(["certDer", "keySealed", "notAfter"]);
        expect(value.keySealed).toMatch(/^v1\./);
        // No PKCS#8 in the clear: the sealed blob does not contain the key's DER.
        const der = root.privateKey.export({ type: "pkcs8", format: "der" });
        expect(JSON.stringify(value)).not.toContain(der.toString("base64"));
      }
      // The public route serves the root, never a key.
      const served = await a.inject({ method: "GET", url: "/v1/system/ca" });
      expect(served.statusCode).toBe(200);
      expect(served.headers["content-type"]).toMatch(/application\/x-pem-file/);
      expect(served.body).toBe(root.certPem);
      expect(served.body).not.toMatch(/PRIVATE KEY/);
    }, 60_000);
  });
});

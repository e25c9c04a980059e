/**
 * Workload SVIDs against the real identities API (buildApp on PGlite,
 * listening on 127.0.0.1): the agent's own CSR is accepted, the files are
 * written with their modes and verify with openssl against the tenant's
 * bundle, renewal happens at half-life and not before, a wrong SPIFFE ID is
 * refused by the CA, and workloads that left lose their directory.
 */
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { ApiClient } from "../../nodeagent/src/agent/client.ts";
import { buildCsr, newWorkloadKey } from "../../nodeagent/src/agent/csr.ts";
import { SvidManager } from "../../nodeagent/src/agent/svid.ts";
import { bearer, startApi, tenantWithToken } from "../support/api.ts";

describe("workload SVIDs from the real API", () => {
  let app: WeftApp;
  let client: ApiClient;
  let tenant: string;
  let spiffeId: string;
  let stateDir: string;

  beforeAll(async () => {
    app = await startApi("pglite");
    await app.listen({ port: 0, host: "127.0.0.1" });
    const t = await tenantWithToken(app, ["admin"]);
    tenant = t.tenant;
    const res = await app.inject({ method: "PUT", url: `/v1/tenants/${tenant}/identities/web`, headers: bearer(t.token), payload: { path: "/ns/prod/sa/web", x509SvidTtlSeconds: 600 } });
    expect(res.statusCode, res.body).toBeLessThan(300);
    spiffeId = res.json().spiffeId;
    const address = app.server.address() as { port: number };
    // A tenant token with the write scope may obtain SVIDs like a node credential may for its workloads.
    client = new ApiClient(`http://127.0.0.1:${address.port}`, t.token);
    stateDir = mkdtempSync(join(tmpdir(), "weft-svid-"));
  });
  afterAll(async () => {
    rmSync(stateDir, { recursive: true, force: true });
    await app?.close();
  });

  it("builds a CSR openssl accepts, with the SPIFFE ID as URI SAN", () => {
    const key = newWorkloadKey();
    const pem = buildCsr(key.privateKey, { commonName: "w1", spiffeId: "spiffe://t.test.weft/ns/a" });
    const text = execFileSync("openssl", ["req", "-noout", "-verify", "-text"], { input: pem, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
    expect(text).toContain("URI:spiffe://t.test.weft/ns/a");
    expect(text).toMatch(/ASN1 OID: prime256v1/);
  });

  it("writes key, cert and bundle with their modes; the cert verifies against the bundle", async () => {
    let now = Date.now();
    const mgr = new SvidManager({ stateDir, client, now: () => now });
    try {
      const ref = { tenant, identity: "web", workload: "web-1", spiffeId };
      const first = await mgr.sync([ref]);
      expect(first).toMatchObject({ issued: [`${tenant}/web-1`], errors: [] });
      const dir = mgr.dirOf(ref);
      expect(statSync(join(dir, "key.pem")).mode & 0o777).toBe(0o600);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      const verified = execFileSync("openssl", ["verify", "-CAfile", join(dir, "bundle.pem"), join(dir, "cert.pem")], { encoding: "utf8" });
      expect(verified.trim()).toBe(`${join(dir, "cert.pem")}: OK`);
      const cert = new X509Certificate(readFileSync(join(dir, "cert.pem")));
      expect(cert.subjectAltName).toBe(`URI:${spiffeId}`);
      expect(cert.checkPrivateKey((await import("node:crypto")).createPrivateKey(readFileSync(join(dir, "key.pem"))))).toBe(true);

      // Before half-life: kept. Past it: a new key and certificate.
      expect(await mgr.sync()).toMatchObject({ kept: [`${tenant}/web-1`], issued: [] });
      const serial = cert.serialNumber;
      now = Date.parse(cert.validFrom) + (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 2 + 1000;
      expect(await mgr.sync()).toMatchObject({ issued: [`${tenant}/web-1`], errors: [] });
      expect(new X509Certificate(readFileSync(join(dir, "cert.pem"))).serialNumber).not.toBe(serial);

      // The workload left: its directory goes, and the tenant's with it.
      expect(await mgr.sync([])).toMatchObject({ removed: [`${tenant}/web-1`] });
      expect(existsSync(dir)).toBe(false);
      expect(existsSync(join(stateDir, "svids", tenant))).toBe(false);
    } finally {
      mgr.close();
    }
  });

  it("reports a refusal (the CA will not issue another SPIFFE ID) and writes nothing", async () => {
    const mgr = new SvidManager({ stateDir, client });
    try {
      const ref = { tenant, identity: "web", workload: "web-2", spiffeId: `${spiffeId}-other` };
      const r = await mgr.sync([ref]);
      expect(r.issued).toEqual([]);
      expect(r.errors[0]).toMatch(new RegExp(`failed to renew SVID of ${tenant}/web-2: failed to POST .*x509-svids: 400`));
      expect(existsSync(join(mgr.dirOf(ref), "cert.pem"))).toBe(false);
      // An unsafe name never becomes a path.
      expect((await mgr.sync([{ tenant: "..", identity: "web", workload: "x" }])).errors[0]).toMatch(/simple names/);
    } finally {
      mgr.close();
    }
  });
});

// The signing pool (api/src/ca/signing-pool.ts): the same leaves as signing
// in-thread, a refused CSR refused the same way, a worker that dies fails only
// its own jobs (SigningUnavailableError, never a hang) and is replaced, and
// close() ends the workers and fails what was still in flight.
import { X509Certificate, createPublicKey } from "node:crypto";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CaInputError } from "../../api/src/ca/errors.ts";
import { generateP256 } from "../../api/src/ca/keys.ts";
import { InThreadLeafIssuer, type LeafJob } from "../../api/src/ca/leaf-issuer.ts";
import { SigningPool, SigningUnavailableError } from "../../api/src/ca/signing-pool.ts";
import { createCaCertificate, createLeafTemplate } from "../../api/src/ca/x509.ts";
import { caCall } from "../../api/src/routes/ca/problems.ts";
import { HttpProblem } from "../../api/src/http/problem.ts";
import { makeCsr, opensslStatus, tempDir } from "./helpers.ts";
import { untilHolds } from "../support/until.ts";
import { toPem } from "@weft/pki/der";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const SPIFFE_ID = "spiffe://pool.test/ns/a/sa/b";
const now = new Date();
const ca = generateP256();
const caCert = createCaCertificate({ trustDomain: "pool.test", ...ca, now, ttlMs: 86_400_000 });
const template = createLeafTemplate({ certDer: caCert.der, privateKey: ca.privateKey, notBefore: caCert.notBefore, notAfter: caCert.notAfter });
const caFile = tmp.file("ca.pem", toPem("CERTIFICATE", caCert.der));
const job = (csrPem: string, over: Partial<LeafJob> = {}): LeafJob => ({ slotKey: "t/slot", template, csrPem, spiffeId: SPIFFE_ID, now, ttlMs: 600_000, ...over });

/** What a leaf says, without what differs between any two leaves (serial, signature). */
function profile(der: Buffer) {
  const c = new X509Certificate(der);
  return {
    subject: c.subject,
    issuer: c.issuer,
    san: c.subjectAltName,
    validFrom: c.validFrom,
    validTo: c.validTo,
    keyUsage: c.keyUsage,
    ca: c.ca,
    spki: c.publicKey.export({ type: "spki", format: "der" }).toString("base64"),
    signedByCa: c.verify(createPublicKey(ca.privateKey)),
  };
}

const pools: SigningPool[] = [];
const newPool = (size: number) => {
  const p = new SigningPool(size);
  pools.push(p);
  return p;
};
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

describe("signing pool", () => {
  it("signs the same leaves as the in-thread path, and openssl verifies them", async () => {
    const pool = newPool(2);
    const csrs = Array.from({ length: 6 }, () => makeCsr(tmp.dir, { uri: SPIFFE_ID }).csrPem);
    const inThread = new InThreadLeafIssuer();
    const fromPool = await Promise.all(csrs.map((c) => pool.issue(job(c))));
    const local = await Promise.all(csrs.map((c) => inThread.issue(job(c))));
    for (let i = 0; i < csrs.length; i++) {
      expect(Buffer.isBuffer(fromPool[i]!.der)).toBe(true);
      expect(profile(fromPool[i]!.der)).toEqual(profile(local[i]!.der));
      expect(fromPool[i]!.notAfter).toEqual(local[i]!.notAfter);
      expect(fromPool[i]!.serialHex).not.toBe(local[i]!.serialHex);
      const leaf = tmp.file(`pool-${i}.pem`, toPem("CERTIFICATE", fromPool[i]!.der));
      const r = opensslStatus(["verify", "-x509_strict", "-CAfile", caFile, leaf]);
      expect(r.out).toContain("OK");
      expect(r.ok).toBe(true);
    }
    // Serials are unique across the workers too (each has its own random pool).
    expect(new Set(fromPool.map((l) => l.serialHex)).size).toBe(csrs.length);
  });

  it("refuses what the in-thread path refuses, with the same field errors", async () => {
    const pool = newPool(1);
    const inThread = new InThreadLeafIssuer();
    const otherUri = makeCsr(tmp.dir, { uri: "spiffe://pool.test/ns/evil" }).csrPem;
    const rsaSmall = makeCsr(tmp.dir, { key: "rsa-1024" }).csrPem;
    for (const bad of ["not a csr", otherUri, rsaSmall]) {
      const a = await pool.issue(job(bad)).catch((e: unknown) => e);
      const b = await inThread.issue(job(bad)).catch((e: unknown) => e);
      expect(a).toBeInstanceOf(CaInputError);
      expect((a as CaInputError).errors).toEqual((b as CaInputError).errors);
    }
  });

  it("a worker that dies fails its jobs with SigningUnavailableError (a 503 problem), never a hang, and is replaced", async () => {
    const pool = newPool(1);
    const csr = makeCsr(tmp.dir).csrPem;
    await pool.issue(job(csr)); // the worker is up
    const [before] = pool.threadIds;
    const jobs = Array.from({ length: 200 }, () => pool.issue(job(csr)).then(() => "ok", (e: unknown) => e));
    await pool.crash(before!);
    const settled = await Promise.race([Promise.all(jobs), new Promise<"hung">((r) => setTimeout(() => r("hung"), 10_000))]);
    expect(settled).not.toBe("hung");
    const failures = (settled as unknown[]).filter((x) => x !== "ok");
    expect(failures.length).toBeGreaterThan(0);
    for (const f of failures) expect(f).toBeInstanceOf(SigningUnavailableError);
    // The route turns it into 503 with Retry-After.
    const problem = await caCall(() => Promise.reject(failures[0])).catch((e: unknown) => e);
    expect(problem).toBeInstanceOf(HttpProblem);
    expect((problem as HttpProblem).status).toBe(503);
    expect((problem as HttpProblem).headers["retry-after"]).toBe("1");
    // A new worker took its place, got the template again, and signs.
    expect(pool.replaced).toBe(1);
    expect(pool.threadIds).toHaveLength(1);
    expect(pool.threadIds[0]).not.toBe(before);
    const leaf = await pool.issue(job(csr));
    expect(profile(leaf.der).signedByCa).toBe(true);
  });

  it("close() ends every worker and fails what was in flight or comes later", async () => {
    const pool = newPool(2);
    const csr = makeCsr(tmp.dir).csrPem;
    await pool.issue(job(csr));
    const inFlight = Array.from({ length: 100 }, () => pool.issue(job(csr)).then(() => "ok", (e: unknown) => e));
    await pool.close();
    const settled = await Promise.all(inFlight);
    for (const s of settled) if (s !== "ok") expect(s).toBeInstanceOf(SigningUnavailableError);
    expect(pool.threadIds).toEqual([]);
    expect(pool.replaced).toBe(0);
    await expect(pool.issue(job(csr))).rejects.toBeInstanceOf(SigningUnavailableError);
  });

  it("workers that cannot start: the pool stops respawning after a few and refuses jobs with SigningUnavailableError, never hangs", async () => {
    const exits: Error[] = [];
    const pool = new SigningPool(2, (e) => exits.push(e), new URL("data:text/javascript,throw new Error('cannot start')"));
    pools.push(pool);
    const csr = makeCsr(tmp.dir).csrPem;
    const queued = pool.issue(job(csr)).catch((e: unknown) => e);
    const settled = await Promise.race([queued, new Promise<"hung">((r) => setTimeout(() => r("hung"), 10_000))]);
    expect(settled).toBeInstanceOf(SigningUnavailableError);
    expect((settled as Error).message).toMatch(/cannot start/);
    // No respawn loop: after a few failed starts the pool gives up, says why, and refuses at once.
    await untilHolds("the pool gives up", () => pool.threadIds.length, (n) => n === 0);
    expect(exits.some((e) => /fail to start/.test(e.message))).toBe(true);
    await expect(pool.issue(job(csr))).rejects.toThrow(/fail to start/);
    expect(pool.replaced).toBeLessThanOrEqual(3);
  });

  it("forget() drops a slot's key from the workers: its jobs no longer sign with it", async () => {
    const pool = newPool(1);
    const csr = makeCsr(tmp.dir).csrPem;
    await pool.issue(job(csr));
    pool.forget("t/slot");
    // The next job sends the template again; it signs as before.
    expect(profile((await pool.issue(job(csr))).der).signedByCa).toBe(true);
  });
});

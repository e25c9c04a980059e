// Issued X.509-SVIDs and the CA certificate, checked by openssl: chain
// verification in strict mode, and every extension of the profile.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { X509Certificate } from "node:crypto";
import { CALLER, HOUR, extension, makeCsr, newService, openssl, opensslStatus, tempDir } from "./helpers.ts";

const TD = "acme.weft.test";
const ID = `spiffe://${TD}/ns/prod/sa/web`;
const tmp = tempDir();
afterAll(() => tmp.cleanup());


describe("X.509-SVID issuance", () => {
  const { ca, store, clock } = newService();
  let leafText = "";
  let caText = "";
  let leafPem = "";
  let bundlePemText = "";

  beforeAll(async () => {
    await ca.ensure("t1", TD, CALLER);
    const { csrPem } = makeCsr(tmp.dir, { uri: ID });
    const svid = await ca.issueX509Svid({ tenantId: "t1", identityName: "web", spiffeId: ID, csrPem, caller: CALLER });
    leafPem = svid.certificate;
    bundlePemText = (await ca.bundle("t1"))!.pem;
    tmp.file("leaf.pem", leafPem);
    tmp.file("bundle.pem", bundlePemText);
    leafText = openssl(["x509", "-in", tmp.file("leaf.pem"), "-text", "-noout"]);
    caText = openssl(["x509", "-in", tmp.file("bundle.pem"), "-text", "-noout"]);
  });

  it("passes openssl verify -x509_strict against the bundle", () => {
    const r = opensslStatus(["verify", "-x509_strict", "-CAfile", tmp.file("bundle.pem"), tmp.file("leaf.pem")]);
    expect(r.out).toContain("leaf.pem: OK");
    expect(r.ok).toBe(true);
  });

  it("does not verify against another tenant's bundle", async () => {
    await ca.ensure("t2", "other.weft.test", CALLER);
    tmp.file("other.pem", (await ca.bundle("t2"))!.pem);
    expect(opensslStatus(["verify", "-x509_strict", "-CAfile", tmp.file("other.pem"), tmp.file("leaf.pem")]).ok).toBe(false);
  });

  it("has exactly one URI SAN, the SPIFFE ID", () => {
    expect(extension(leafText, "X509v3 Subject Alternative Name")!.value).toBe(`URI:${ID}`);
    expect(leafText.match(/URI:/g)).toHaveLength(1);
  });

  it("is an end-entity certificate for digital signatures only", () => {
    expect(extension(leafText, "X509v3 Basic Constraints")).toEqual({ header: "X509v3 Basic Constraints: critical", value: "CA:FALSE" });
    expect(extension(leafText, "X509v3 Key Usage")).toEqual({ header: "X509v3 Key Usage: critical", value: "Digital Signature" });
    expect(leafText).not.toMatch(/Certificate Sign|CRL Sign/);
    expect(extension(leafText, "X509v3 Extended Key Usage")!.value).toBe(
      "TLS Web Server Authentication, TLS Web Client Authentication",
    );
  });

  it("names the CA's key as its authority key", () => {
    const aki = extension(leafText, "X509v3 Authority Key Identifier")!.value.replace(/^keyid:/, "");
    const caSki = extension(caText, "X509v3 Subject Key Identifier")!.value;
    expect(aki).toMatch(/^([0-9A-F]{2}:){19}[0-9A-F]{2}$/);
    expect(aki).toBe(caSki);
  });

  it("has a positive random serial of at least 64 bits, different per leaf", async () => {
    const serial = /Serial Number:\s*\n\s*([0-9a-f:]+)/.exec(leafText)![1]!;
    const bytes = serial.split(":");
    expect(bytes.length).toBeGreaterThanOrEqual(8);
    expect(parseInt(bytes[0]!, 16)).toBeLessThan(0x80);
    const { csrPem } = makeCsr(tmp.dir, { uri: ID });
    const again = await ca.issueX509Svid({ tenantId: "t1", identityName: "web", spiffeId: ID, csrPem, caller: CALLER });
    expect(again.serial).not.toBe(bytes.join(""));
  });

  it("starts a few seconds ago, lasts the default hour, stays within the CA's validity", () => {
    const leaf = new X509Certificate(leafPem);
    const caCert = new X509Certificate(bundlePemText);
    const from = Date.parse(leaf.validFrom);
    const to = Date.parse(leaf.validTo);
    const now = clock.now().getTime();
    expect(now - from).toBeGreaterThan(0);
    expect(now - from).toBeLessThanOrEqual(11_000);
    expect(to - now).toBeGreaterThan(HOUR - 1000);
    expect(to - now).toBeLessThanOrEqual(HOUR);
    expect(from).toBeGreaterThanOrEqual(Date.parse(caCert.validFrom));
    expect(to).toBeLessThanOrEqual(Date.parse(caCert.validTo));
    expect(leafText).toContain("Signature Algorithm: ecdsa-with-SHA256");
  });

  it("is recorded for audit with serial, identity and expiry", async () => {
    const rec = store.issuances.find((r) => r.serial === new X509Certificate(leafPem).serialNumber.toLowerCase());
    expect(rec).toMatchObject({ tenantId: "t1", identityName: "web", spiffeId: ID, kind: "x509-svid" });
    expect(rec!.expiresAt.getTime()).toBe(Date.parse(new X509Certificate(leafPem).validTo));
  });

  it("never outlives the CA: a long TTL is capped at the CA's notAfter", async () => {
    const { csrPem } = makeCsr(tmp.dir, { uri: ID });
    const svid = await ca.issueX509Svid({ tenantId: "t1", identityName: "web", spiffeId: ID, csrPem, ttlMs: 1000 * HOUR, caller: CALLER });
    expect(svid.expiresAt.getTime()).toBe(Date.parse(new X509Certificate(bundlePemText).validTo));
  });
});

describe("CA certificate", () => {
  it("is a self-signed CA for the trust domain with the SPIFFE CA profile", async () => {
    const { ca } = newService();
    await ca.ensure("t1", TD, CALLER);
    const pemA = (await ca.bundle("t1"))!.pem;
    const text = openssl(["x509", "-in", tmp.file("ca-a.pem", pemA), "-text", "-noout"]);
    expect(extension(text, "X509v3 Basic Constraints")!.header).toBe("X509v3 Basic Constraints: critical");
    expect(extension(text, "X509v3 Basic Constraints")!.value).toMatch(/^CA:TRUE/);
    expect(extension(text, "X509v3 Key Usage")).toEqual({ header: "X509v3 Key Usage: critical", value: "Certificate Sign, CRL Sign" });
    expect(extension(text, "X509v3 Subject Alternative Name")!.value).toBe(`URI:spiffe://${TD}`);
    expect(extension(text, "X509v3 Subject Key Identifier")!.value).toMatch(/^([0-9A-F]{2}:){19}[0-9A-F]{2}$/);
    const cert = new X509Certificate(pemA);
    expect(cert.subject).toBe(cert.issuer);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(opensslStatus(["verify", "-x509_strict", "-CAfile", tmp.file("ca-a.pem"), tmp.file("ca-a.pem")]).ok).toBe(true);
    // Lifetime: SPIRE's 24 h default.
    expect(Date.parse(cert.validTo) - Date.parse(cert.validFrom)).toBe(24 * HOUR + 10_000);

    // A second CA of the same tenant has a different subject.
    await ca.prepare("t1", TD, CALLER);
    const certs = (await ca.bundle("t1"))!.pem.split(/(?<=-----END CERTIFICATE-----\n)/).filter(Boolean);
    expect(certs).toHaveLength(2);
    const [s1, s2] = certs.map((p) => new X509Certificate(p).subject);
    expect(s1).not.toBe(s2);
  });
});

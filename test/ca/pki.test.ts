// @weft/pki's X.509 and PKCS#10 builders read back by openssl: a
// certificate made of name(), validity(), extension(), keyUsage(), uriName()
// and dnsName() as `openssl x509 -text` prints it, and a request made of
// certificationRequestInfo() and extensionRequest() as `openssl req -verify`
// checks it, then read back by parseCertificationRequest().
import { afterAll, describe, expect, it } from "vitest";
import { createPublicKey, generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { bool, octetString, oid, seq, smallInt, tlv, toPem } from "@weft/pki/der";
import { certificationRequest, certificationRequestInfo, extensionRequest, parseCertificationRequest, requestedUris } from "@weft/pki/pkcs10";
import {
  ECDSA_WITH_SHA256,
  KEY_USAGE,
  OID,
  VERSION_3,
  certificate,
  dnsName,
  ecJwk,
  extension,
  keyIdentifier,
  keyUsage,
  name,
  readCertificate,
  uriName,
  validity,
} from "@weft/pki/x509";
import { openssl, tempDir } from "./helpers.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const spki = publicKey.export({ type: "spki", format: "der" });

function selfSigned(extensions: Buffer[]): Buffer {
  const subject = name([
    [OID.organizationName, "Weft"],
    [OID.commonName, "pki.test"],
  ]);
  const tbs = seq(
    VERSION_3,
    smallInt(7),
    ECDSA_WITH_SHA256,
    subject,
    validity(new Date("2026-01-02T03:04:05Z"), new Date("2051-06-07T08:09:10Z")),
    subject,
    spki,
    tlv(0xa3, seq(...extensions)),
  );
  return certificate(tbs, ECDSA_WITH_SHA256, sign("sha256", tbs, { key: privateKey, dsaEncoding: "der" }));
}

function text(der: Buffer, file: string): string {
  return openssl(["x509", "-in", tmp.file(file, toPem("CERTIFICATE", der)), "-noout", "-text"]);
}

describe("X.509 building blocks", () => {
  it("make a certificate openssl reads field by field", () => {
    const der = selfSigned([
      extension(OID.basicConstraints, true, seq(bool(true))),
      extension(OID.keyUsage, true, keyUsage(KEY_USAGE.digitalSignature, KEY_USAGE.keyEncipherment, KEY_USAGE.keyAgreement, KEY_USAGE.keyCertSign)),
      extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))),
      extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))),
      extension(OID.subjectAltName, false, seq(uriName("spiffe://acme.weft.test/ns/prod/sa/web"), dnsName("localhost"))),
    ]);
    const out = text(der, "all.pem");
    expect(out).toMatch(/Version: 3 \(0x2\)/);
    expect(out).toMatch(/Serial Number: 7 \(0x7\)/);
    expect(out).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
    expect(out).toMatch(/Issuer: O = Weft, CN = pki\.test/);
    expect(out).toMatch(/Not Before: Jan {2}2 03:04:05 2026 GMT/);
    expect(out).toMatch(/Not After : Jun {2}7 08:09:10 2051 GMT/);
    expect(out).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE/);
    expect(out).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment, Key Agreement, Certificate Sign\n/);
    expect(out).toMatch(/X509v3 Extended Key Usage: \s+TLS Web Server Authentication, TLS Web Client Authentication/);
    const ski = keyIdentifier(spki).toString("hex").toUpperCase().match(/../g)!.join(":");
    expect(out).toContain(`X509v3 Subject Key Identifier: \n                ${ski}`);
    expect(out).toMatch(/X509v3 Subject Alternative Name: \s+URI:spiffe:\/\/acme\.weft\.test\/ns\/prod\/sa\/web, DNS:localhost/);
    expect(readCertificate(der).spkiDer.equals(spki)).toBe(true);
    // The key identifier is the SHA-1 of the key bits, as openssl computes it.
    expect(openssl(["x509", "-in", tmp.file("all.pem"), "-noout", "-ext", "subjectKeyIdentifier"])).toContain(ski);
  });

  it("set exactly the KeyUsage bits asked for, at each trailing-bit count", () => {
    const cases: [number[], string][] = [
      [[KEY_USAGE.digitalSignature], "Digital Signature"],
      [[KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign], "Certificate Sign, CRL Sign"],
      [[KEY_USAGE.contentCommitment, KEY_USAGE.encipherOnly], "Non Repudiation, Encipher Only"],
      [[KEY_USAGE.keyAgreement, KEY_USAGE.decipherOnly], "Key Agreement, Decipher Only"],
      [[KEY_USAGE.dataEncipherment], "Data Encipherment"],
    ];
    cases.forEach(([bits, expected], i) => {
      const out = text(selfSigned([extension(OID.keyUsage, true, keyUsage(...bits))]), `ku${i}.pem`);
      expect(out, bits.join(",")).toMatch(new RegExp(`X509v3 Key Usage: critical\\s+${expected}\\n`));
      // Byte for byte as openssl encodes the same bit list (DER: trailing zero bits dropped and counted).
      openssl(["asn1parse", "-genstr", `FORMAT:BITLIST,BITSTRING:${bits.join(",")}`, "-noout", "-out", tmp.file(`ku${i}.der`)]);
      expect(keyUsage(...bits).toString("hex"), bits.join(",")).toBe(readFileSync(tmp.file(`ku${i}.der`)).toString("hex"));
    });
    expect(() => keyUsage()).toThrow();
    expect(() => keyUsage(9)).toThrow();
  });

  it("read an EC key as the JWK node:crypto exports", () => {
    expect(ecJwk(spki)).toEqual(createPublicKey(privateKey).export({ format: "jwk" }));
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey;
    expect(ecJwk(p384.export({ type: "spki", format: "der" }))).toEqual(p384.export({ format: "jwk" }));
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
    expect(ecJwk(rsa.export({ type: "spki", format: "der" }))).toBeNull();
  });
});

describe("PKCS#10", () => {
  it("builds a request openssl verifies, and reads back what it asks for", () => {
    const id = "spiffe://acme.weft.test/ns/prod/sa/web";
    const info = certificationRequestInfo(
      name([[OID.commonName, "web-1"]]),
      spki,
      [extensionRequest(extension(OID.subjectAltName, false, seq(uriName(id), dnsName("web.local"))))],
    );
    const der = certificationRequest(info, ECDSA_WITH_SHA256, sign("sha256", info, { key: privateKey, dsaEncoding: "der" }));
    const path = tmp.file("req.pem", toPem("CERTIFICATE REQUEST", der));
    const out = openssl(["req", "-in", path, "-noout", "-verify", "-text"]);
    expect(out).toMatch(/Subject: CN = web-1/);
    expect(out).toMatch(/Requested Extensions:\s+X509v3 Subject Alternative Name: \s+URI:spiffe:\/\/acme\.weft\.test\/ns\/prod\/sa\/web, DNS:web\.local/);
    const parsed = parseCertificationRequest(der);
    expect(parsed.info.equals(info)).toBe(true);
    expect(parsed.spkiDer.equals(spki)).toBe(true);
    expect(parsed.sigAlgOid).toBe(OID.ecdsaWithSha256);
    expect(requestedUris(parsed.attributes)).toEqual([id]);
  });

  it("reads a request openssl made, with no attributes", () => {
    const key = tmp.file("k.pem", privateKey.export({ type: "pkcs8", format: "pem" }).toString());
    openssl(["req", "-new", "-key", key, "-subj", "/O=acme", "-out", tmp.file("plain.csr")]);
    const pem = openssl(["req", "-in", tmp.file("plain.csr"), "-outform", "PEM"]);
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    const parsed = parseCertificationRequest(der);
    expect(parsed.spkiDer.equals(spki)).toBe(true);
    expect(parsed.attributes).toEqual([]);
    expect(requestedUris(parsed.attributes)).toEqual([]);
  });
});

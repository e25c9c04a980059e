// The API's serving certificate, issued by the operator CA (tls/operator-ca.ts):
// a TLS server certificate (RFC 5280, the CA/Browser Forum's profile where
// it applies) for the names in WEFT_TLS_SAN.
import { isIPv4 } from "node:net";
import { octetString, oid, seq, tlv, uintBytes, ctx, toPem } from "@weft/pki/der";
import { ECDSA_WITH_SHA256, KEY_USAGE, OID, VERSION_3, dnsName, extension, ipName, keyIdentifier, keyUsage, name, readCertificate, validity } from "@weft/pki/x509";
import { generateP256 } from "../ca/keys.ts";
import { BACKDATE_MS, floorToSecond, randomSerial, signCertificate } from "../ca/x509.ts";
import type { OperatorCa } from "./operator-ca.ts";
import type { San } from "./sans.ts";

export interface ServingCertificate {
  certPem: string;
  keyPem: string;
  serialHex: string;
  issuedAt: Date;
  notAfter: Date;
}

/** An IPv4 or IPv6 address as the 4 or 16 bytes of an iPAddress GeneralName. */
function addressBytes(address: string): Buffer {
  if (isIPv4(address)) return Buffer.from(address.split(".").map(Number));
  // Expand "::" into the missing zero groups; an embedded IPv4 tail becomes two groups.
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split(".").map(Number);
    text = `${text.slice(0, -v4[1]!.length)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const groups = (s: string | undefined) => (s ? s.split(":") : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

const generalName = (san: San): Buffer => (san.type === "dns" ? dnsName(san.value) : ipName(addressBytes(san.value)));

/**
 * A P-256 key and a certificate for it, valid for ttlMs from now (backdated a
 * little for clients whose clocks lag) and never past the CA. The SANs are
 * what clients check; the CN repeats the first one for people reading it.
 */
export function issueServingCertificate(ca: OperatorCa, sans: readonly San[], now: Date, ttlMs: number): ServingCertificate {
  if (sans.length === 0) throw new Error("a serving certificate needs at least one subject alternative name");
  const key = generateP256();
  const serial = randomSerial();
  const notBefore = floorToSecond(now.getTime() - BACKDATE_MS);
  const notAfter = floorToSecond(Math.min(now.getTime() + ttlMs, ca.notAfter.getTime()));
  if (notAfter.getTime() <= now.getTime()) throw new Error("the operator CA has expired");
  const { subjectDer: issuer, spkiDer: caSpki } = readCertificate(ca.certDer);
  const tbs = seq(
    VERSION_3,
    uintBytes(serial),
    ECDSA_WITH_SHA256,
    issuer,
    validity(notBefore, notAfter),
    name([
      [OID.organizationName, "Weft"],
      [OID.commonName, sans[0]!.value.slice(0, 64)],
    ]),
    key.publicKeySpki,
    ctx(
      3,
      seq(
        extension(OID.basicConstraints, true, seq()),
        extension(OID.keyUsage, true, keyUsage(KEY_USAGE.digitalSignature)),
        extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))),
        extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(key.publicKeySpki))),
        extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, keyIdentifier(caSpki)))),
        extension(OID.subjectAltName, false, seq(...sans.map(generalName))),
      ),
    ),
  );
  return {
    certPem: toPem("CERTIFICATE", signCertificate(tbs, ca.privateKey)),
    keyPem: key.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    serialHex: serial.toString("hex"),
    issuedAt: now,
    notAfter,
  };
}

// X.509 certificates for the tenant CA and its X.509-SVIDs: the profile and
// the signing decisions, built straight as DER with @weft/pki (see its
// der.ts for why). Everything that does not change between two
// leaves of one CA (issuer name, algorithm, fixed extensions, AKI) is encoded
// once into a LeafTemplate; an issuance only encodes serial, validity, key,
// SKI and SAN, then signs.
//
// Profile: spiffe/spiffe standards/X509-SVID.md and RFC 5280.
import { randomFillSync, sign, type KeyObject } from "node:crypto";
import { bool, ctx, octetString, oid, seq, smallInt, tlv, uintBytes } from "@weft/pki/der";
import {
  ECDSA_WITH_SHA256,
  KEY_USAGE,
  OID,
  VERSION_3,
  certificate,
  extension,
  keyIdentifier,
  keyUsage,
  name,
  readCertificate,
  uriName,
  validity,
} from "@weft/pki/x509";

export const DEFAULT_X509_SVID_TTL_MS = 60 * 60 * 1000; // SPIRE's default: 1 h
/** Leaves start this far in the past so a peer whose clock lags a little accepts them. */
export const BACKDATE_MS = 10_000;
/** 16 random bytes; one bit forced on so the DER INTEGER is always 16 bytes (126 random bits). */
export const SERIAL_BYTES = 16;
const ORGANIZATION = "Weft";

const SIG_ALG = ECDSA_WITH_SHA256;
const KU_DIGITAL_SIGNATURE = keyUsage(KEY_USAGE.digitalSignature);
const KU_CERT_SIGN_CRL_SIGN = keyUsage(KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign);

// The two per-leaf extensions' OIDs, encoded once (oid() parses its string).
const OID_SKI_DER = oid(OID.subjectKeyIdentifier);
const OID_SAN_DER = oid(OID.subjectAltName);

// CSPRNG output drawn a few KiB at a time: one randomBytes() call per serial
// cost more than building the rest of the leaf. Every serial gets fresh
// bytes; none is handed out twice.
const RANDOM_POOL_BYTES = 4096;
const randomPool = Buffer.alloc(RANDOM_POOL_BYTES);
let randomPoolAt = RANDOM_POOL_BYTES;

/** Random positive serial, never zero, always SERIAL_BYTES long. */
export function randomSerial(): Buffer {
  if (randomPoolAt + SERIAL_BYTES > RANDOM_POOL_BYTES) {
    randomFillSync(randomPool);
    randomPoolAt = 0;
  }
  const b = Buffer.from(randomPool.subarray(randomPoolAt, randomPoolAt + SERIAL_BYTES)); // a copy: the pool is refilled in place
  randomPool.fill(0, randomPoolAt, randomPoolAt + SERIAL_BYTES);
  randomPoolAt += SERIAL_BYTES;
  b[0] = (b[0]! & 0x7f) | 0x40;
  return b;
}

export function signCertificate(tbs: Buffer, caKey: KeyObject): Buffer {
  const sig = sign("sha256", tbs, { key: caKey, dsaEncoding: "der" });
  return certificate(tbs, SIG_ALG, sig);
}

export const floorToSecond = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);

export interface CaCertificateInput {
  trustDomain: string;
  /** The CA's key pair (P-256). */
  privateKey: KeyObject;
  publicKeySpki: Buffer;
  now: Date;
  ttlMs: number;
}

export interface CaCertificate {
  der: Buffer;
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
}

/** What differs between Weft's self-signed CAs: the tenants' SPIFFE CAs and the operator CA of the API's TLS. */
export interface SelfSignedCaInput {
  /** The CN, followed by the serial. */
  commonNamePrefix: string;
  /** GeneralNames of the subjectAltName extension; none: no extension. */
  altNames: readonly Buffer[];
  /** basicConstraints pathLenConstraint; undefined: unbounded. */
  pathLength?: number;
  privateKey: KeyObject;
  publicKeySpki: Buffer;
  now: Date;
  ttlMs: number;
}

/**
 * A self-signed CA certificate. Its subject carries the serial, so every CA
 * (current, next, old) has a distinct subject and validators never confuse them.
 */
export function createSelfSignedCa(input: SelfSignedCaInput): CaCertificate {
  const serial = randomSerial();
  const serialHex = serial.toString("hex");
  const notBefore = floorToSecond(input.now.getTime() - BACKDATE_MS);
  const notAfter = floorToSecond(input.now.getTime() + input.ttlMs);
  const subject = name([
    [OID.organizationName, ORGANIZATION],
    [OID.commonName, `${input.commonNamePrefix} ${serialHex}`],
  ]);
  const ski = keyIdentifier(input.publicKeySpki);
  const constraints = input.pathLength === undefined ? seq(bool(true)) : seq(bool(true), smallInt(input.pathLength));
  const tbs = seq(
    VERSION_3,
    uintBytes(serial),
    SIG_ALG,
    subject,
    validity(notBefore, notAfter),
    subject,
    input.publicKeySpki,
    ctx(
      3,
      seq(
        extension(OID.basicConstraints, true, constraints),
        extension(OID.keyUsage, true, KU_CERT_SIGN_CRL_SIGN),
        extension(OID.subjectKeyIdentifier, false, octetString(ski)),
        ...(input.altNames.length > 0 ? [extension(OID.subjectAltName, false, seq(...input.altNames))] : []),
      ),
    ),
  );
  return { der: signCertificate(tbs, input.privateKey), serialHex, notBefore, notAfter };
}

/**
 * A tenant's CA: the trust domain is in the URI SAN (a CN of up to 255 bytes
 * would break the 64-character X.520 bound).
 */
export function createCaCertificate(input: CaCertificateInput): CaCertificate {
  const { trustDomain, ...rest } = input;
  return createSelfSignedCa({ ...rest, commonNamePrefix: "Weft CA", altNames: [uriName(`spiffe://${trustDomain}`)] });
}

export interface LeafTemplate {
  readonly caKey: KeyObject;
  readonly caNotBefore: Date;
  readonly caNotAfter: Date;
  /** signature AlgorithmIdentifier + issuer Name, encoded once. */
  readonly algAndIssuer: Buffer;
  /** basicConstraints, keyUsage, extKeyUsage and AKI, encoded once. */
  readonly fixedExtensions: Buffer;
}

const LEAF_SUBJECT = name([[OID.organizationName, ORGANIZATION]]);
const LEAF_BASIC_CONSTRAINTS = extension(OID.basicConstraints, true, seq()); // cA DEFAULT FALSE is omitted in DER
const LEAF_KEY_USAGE = extension(OID.keyUsage, true, KU_DIGITAL_SIGNATURE);
const LEAF_EKU = extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth)));

export function createLeafTemplate(ca: {
  certDer: Uint8Array;
  privateKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
}): LeafTemplate {
  const { subjectDer, spkiDer } = readCertificate(ca.certDer);
  const aki = extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, keyIdentifier(spkiDer))));
  return {
    caKey: ca.privateKey,
    caNotBefore: ca.notBefore,
    caNotAfter: ca.notAfter,
    algAndIssuer: Buffer.concat([SIG_ALG, subjectDer]),
    fixedExtensions: Buffer.concat([LEAF_BASIC_CONSTRAINTS, LEAF_KEY_USAGE, LEAF_EKU, aki]),
  };
}

export interface LeafInput {
  spiffeId: string;
  /** The workload's SubjectPublicKeyInfo DER (from a verified CSR). */
  spkiDer: Buffer;
  now: Date;
  ttlMs?: number;
}

export interface IssuedLeaf {
  der: Buffer;
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * An X.509-SVID. The subject is O=Weft (non-empty, so the SAN may stay
 * non-critical per X509-SVID.md 4.3); the SPIFFE ID is the only SAN.
 * notAfter never passes the CA's: a leaf outliving its issuer would fail
 * validation at the end anyway and would pin an old CA in the bundle.
 */
export function issueLeaf(t: LeafTemplate, input: LeafInput): IssuedLeaf {
  const nowMs = input.now.getTime();
  const ttl = input.ttlMs ?? DEFAULT_X509_SVID_TTL_MS;
  const notBefore = floorToSecond(Math.max(nowMs - BACKDATE_MS, t.caNotBefore.getTime()));
  const notAfter = floorToSecond(Math.min(nowMs + ttl, t.caNotAfter.getTime()));
  if (notAfter.getTime() <= nowMs) throw new Error("the signing CA has expired; rotate it before issuing");
  const serial = randomSerial();
  const tbs = seq(
    VERSION_3,
    uintBytes(serial),
    t.algAndIssuer,
    validity(notBefore, notAfter),
    LEAF_SUBJECT,
    input.spkiDer,
    ctx(
      3,
      seq(
        t.fixedExtensions,
        extension(OID_SKI_DER, false, octetString(keyIdentifier(input.spkiDer))),
        extension(OID_SAN_DER, false, seq(uriName(input.spiffeId))),
      ),
    ),
  );
  return { der: signCertificate(tbs, t.caKey), serialHex: serial.toString("hex"), notBefore, notAfter };
}


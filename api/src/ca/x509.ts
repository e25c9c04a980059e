// X.509 certificates for the tenant CA and its X.509-SVIDs, built straight
// as DER (see der.ts for why). Everything that does not change between two
// leaves of one CA (issuer name, algorithm, fixed extensions, AKI) is encoded
// once into a LeafTemplate; an issuance only encodes serial, validity, key,
// SKI and SAN, then signs.
//
// Profile: spiffe/spiffe standards/X509-SVID.md and RFC 5280.
import { hash, randomFillSync, sign, type KeyObject } from "node:crypto";
import {
  TAG,
  bitString,
  bitStringBytes,
  bool,
  children,
  ctx,
  expectTag,
  octetString,
  oid,
  readTop,
  seq,
  set,
  smallInt,
  time,
  tlv,
  uintBytes,
  utf8,
  whole,
} from "./der.ts";

/** The object identifiers Weft's certificates use (also the Terraform provider's AutoMTLS certificate). */
export const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  organizationName: "2.5.4.10",
  commonName: "2.5.4.3",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectKeyIdentifier: "2.5.29.14",
  authorityKeyIdentifier: "2.5.29.35",
  subjectAltName: "2.5.29.17",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

export const DEFAULT_X509_SVID_TTL_MS = 60 * 60 * 1000; // SPIRE's default: 1 h
/** Leaves start this far in the past so a peer whose clock lags a little accepts them. */
export const BACKDATE_MS = 10_000;
/** 16 random bytes; one bit forced on so the DER INTEGER is always 16 bytes (126 random bits). */
export const SERIAL_BYTES = 16;
const ORGANIZATION = "Weft";

// AlgorithmIdentifier for ecdsa-with-SHA256: parameters absent (RFC 5758 3.2).
const SIG_ALG = seq(oid(OID.ecdsaWithSha256));
const VERSION_3 = ctx(0, smallInt(2));

// KeyUsage bits are numbered from the most significant bit; DER drops
// trailing zero bits and records their count in the first byte.
const KU_DIGITAL_SIGNATURE = tlv(TAG.BIT_STRING, Buffer.of(7, 0x80));
const KU_CERT_SIGN_CRL_SIGN = tlv(TAG.BIT_STRING, Buffer.of(1, 0x06));

export function extension(id: string | Buffer, critical: boolean, valueDer: Uint8Array): Buffer {
  const idDer = typeof id === "string" ? oid(id) : id;
  return critical ? seq(idDer, bool(true), octetString(valueDer)) : seq(idDer, octetString(valueDer));
}

// The two per-leaf extensions' OIDs, encoded once (oid() parses its string).
const OID_SKI_DER = oid(OID.subjectKeyIdentifier);
const OID_SAN_DER = oid(OID.subjectAltName);

// GeneralName uniformResourceIdentifier is [6] IMPLICIT IA5String. SPIFFE
// IDs are ASCII by construction (validated character sets).
const uriName = (uri: string): Buffer => tlv(0x86, Buffer.from(uri, "ascii"));

function name(attrs: readonly [string, string][]): Buffer {
  return seq(...attrs.map(([id, v]) => set(seq(oid(id), utf8(v)))));
}

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

/** The subjectPublicKey bits of an SPKI. */
export function spkiKeyBits(spkiDer: Uint8Array): Buffer {
  const top = readTop(spkiDer, TAG.SEQUENCE);
  const [alg, bits] = children(spkiDer, top);
  expectTag(alg, TAG.SEQUENCE, "SubjectPublicKeyInfo algorithm");
  return bitStringBytes(spkiDer, expectTag(bits, TAG.BIT_STRING, "SubjectPublicKeyInfo key"));
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spkiDer: Uint8Array): Buffer {
  // One-shot hash(): no Hash object per leaf (about 40% less in a tight loop).
  return hash("sha1", spkiKeyBits(spkiDer), "buffer");
}

function signCertificate(tbs: Buffer, caKey: KeyObject): Buffer {
  const sig = sign("sha256", tbs, { key: caKey, dsaEncoding: "der" });
  return seq(tbs, SIG_ALG, bitString(sig));
}

const floorToSecond = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);

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

/**
 * A self-signed CA certificate for one trust domain. Its subject carries the
 * serial, so every CA of a tenant (current, next, old) has a distinct subject
 * and validators never confuse them; the trust domain is in the URI SAN
 * (a CN of up to 255 bytes would break the 64-character X.520 bound).
 */
export function createCaCertificate(input: CaCertificateInput): CaCertificate {
  const serial = randomSerial();
  const serialHex = serial.toString("hex");
  const notBefore = floorToSecond(input.now.getTime() - BACKDATE_MS);
  const notAfter = floorToSecond(input.now.getTime() + input.ttlMs);
  const subject = name([
    [OID.organizationName, ORGANIZATION],
    [OID.commonName, `Weft CA ${serialHex}`],
  ]);
  const ski = keyIdentifier(input.publicKeySpki);
  const tbs = seq(
    VERSION_3,
    uintBytes(serial),
    SIG_ALG,
    subject,
    seq(time(notBefore), time(notAfter)),
    subject,
    input.publicKeySpki,
    ctx(
      3,
      seq(
        extension(OID.basicConstraints, true, seq(bool(true))),
        extension(OID.keyUsage, true, KU_CERT_SIGN_CRL_SIGN),
        extension(OID.subjectKeyIdentifier, false, octetString(ski)),
        extension(OID.subjectAltName, false, seq(uriName(`spiffe://${input.trustDomain}`))),
      ),
    ),
  );
  return { der: signCertificate(tbs, input.privateKey), serialHex, notBefore, notAfter };
}

/** The fields of a CA certificate a LeafTemplate needs, read back from its DER. */
export function readCaCertificate(der: Uint8Array): { subjectDer: Buffer; spkiDer: Buffer } {
  const cert = readTop(der, TAG.SEQUENCE);
  const tbs = expectTag(children(der, cert)[0], TAG.SEQUENCE, "tbsCertificate");
  // version [0], serial, signature, issuer, validity, subject, subjectPublicKeyInfo
  const f = children(der, tbs);
  return {
    subjectDer: whole(der, expectTag(f[5], TAG.SEQUENCE, "subject")),
    spkiDer: whole(der, expectTag(f[6], TAG.SEQUENCE, "subjectPublicKeyInfo")),
  };
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
  const { subjectDer, spkiDer } = readCaCertificate(ca.certDer);
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
    seq(time(notBefore), time(notAfter)),
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


// Minimal DER encoder and reader for the few ASN.1 shapes Weft's PKI needs
// (the API's CA, the agent's CSRs, the Terraform provider's AutoMTLS
// certificate).
//
// Why not @peculiar/asn1-schema: certificates are issued on the hot path of
// the API's SVID endpoint, and a schema-driven serializer (decorators, reflection,
// object graphs) costs more than the ECDSA signature itself. Certificates here
// are built by concatenating precomputed byte strings, so all we need is
// tag-length-value framing plus a handful of primitive encoders. The reader is
// equally small: it walks TLVs with bounds checks and never allocates copies
// (subarray views only).

/** Raised for any malformed DER; callers turn it into a field error. */
export class DerError extends Error {
  override name = "DerError";
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Bytes a DER length takes (short form below 0x80, else 0x8n + n bytes). */
function lengthSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x100) return 2;
  if (n < 0x10000) return 3;
  if (n < 0x1000000) return 4;
  throw new DerError(`length ${n} too large`);
}

/** One TLV whose value is the concatenation of parts. */
export function tlv(tag: number, ...parts: readonly Uint8Array[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  // Header written in place: a certificate is a dozen nested TLVs, and a
  // separate buffer per length was a good share of building one.
  const lsize = lengthSize(len);
  const out = Buffer.allocUnsafe(1 + lsize + len);
  out[0] = tag;
  if (lsize === 1) out[1] = len;
  else {
    out[1] = 0x80 | (lsize - 1);
    for (let i = lsize - 1, v = len; i >= 1; i--, v >>>= 8) out[1 + i] = v & 0xff;
  }
  let off = 1 + lsize;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export const seq = (...parts: readonly Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...parts);
export const set = (...parts: readonly Uint8Array[]): Buffer => tlv(TAG.SET, ...parts);
/** Context-specific constructed tag [n] (EXPLICIT, or IMPLICIT over a constructed type). */
export const ctx = (n: number, ...parts: readonly Uint8Array[]): Buffer => tlv(0xa0 | n, ...parts);
export const octetString = (b: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, b);
/** BIT STRING with zero unused bits: every key and signature we emit is whole bytes. */
export const bitString = (b: Uint8Array): Buffer => tlv(TAG.BIT_STRING, Buffer.of(0), b);
export const bool = (v: boolean): Buffer => Buffer.of(TAG.BOOLEAN, 1, v ? 0xff : 0);
export const utf8 = (s: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(s, "utf8"));

/** INTEGER from unsigned big-endian bytes, minimally encoded and kept positive. */
export function uintBytes(b: Uint8Array): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const body = b.subarray(i);
  const pad = (body[0] ?? 0) & 0x80 ? Buffer.of(0) : Buffer.alloc(0);
  return tlv(TAG.INTEGER, pad, body.length ? body : Buffer.of(0));
}

export function smallInt(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fff_ffff) throw new DerError(`bad small int ${n}`);
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  return uintBytes(Buffer.from(bytes));
}

export function oid(dotted: string): Buffer {
  const arcs = dotted.split(".").map((a) => Number(a));
  const [a0, a1, ...rest] = arcs;
  if (a0 === undefined || a1 === undefined || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) {
    throw new DerError(`bad OID ${dotted}`);
  }
  const out: number[] = [];
  for (const arc of [a0 * 40 + a1, ...rest]) {
    const chunk: number[] = [arc & 0x7f];
    let v = Math.floor(arc / 128);
    while (v > 0) {
      chunk.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(...chunk);
  }
  return tlv(TAG.OID, Buffer.from(out));
}

/**
 * RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; both
 * in whole seconds, "Z".
 */
export function time(d: Date): Buffer {
  // Digits written straight into the buffer: toISOString and a regex cost
  // more than the rest of a leaf's fields (each leaf has two times).
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) throw new DerError(`year ${year} cannot be encoded`);
  const utc = year >= 1950 && year < 2050;
  const out = Buffer.allocUnsafe(utc ? 15 : 17);
  out[0] = utc ? TAG.UTC_TIME : TAG.GENERALIZED_TIME;
  out[1] = out.length - 2;
  let at = utc ? 2 : put2(out, 2, (year / 100) | 0);
  at = put2(out, at, year % 100);
  at = put2(out, at, d.getUTCMonth() + 1);
  at = put2(out, at, d.getUTCDate());
  at = put2(out, at, d.getUTCHours());
  at = put2(out, at, d.getUTCMinutes());
  at = put2(out, at, d.getUTCSeconds());
  out[at] = 0x5a; // "Z"
  return out;
}

/** Two decimal digits of v (0-99) at offset; returns the offset after them. */
function put2(out: Buffer, offset: number, v: number): number {
  out[offset] = 0x30 + ((v / 10) | 0);
  out[offset + 1] = 0x30 + (v % 10);
  return offset + 2;
}

// ---- reader ----

export interface Tlv {
  tag: number;
  /** Offset of the tag byte in the buffer. */
  start: number;
  /** Offset of the first value byte. */
  valueStart: number;
  /** Offset one past the last value byte. */
  end: number;
}

/** Reads one TLV at offset, bounded by limit. Rejects indefinite and non-minimal lengths. */
export function readTlv(buf: Uint8Array, offset: number, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError("truncated header");
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tags are not supported");
  const first = buf[offset + 1]!;
  let len: number;
  let valueStart: number;
  if (first < 0x80) {
    len = first;
    valueStart = offset + 2;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError("indefinite length is not DER");
    if (n > 3) throw new DerError("length too large");
    if (offset + 2 + n > limit) throw new DerError("truncated length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    if (len < 0x80 || buf[offset + 2] === 0) throw new DerError("non-minimal length");
    valueStart = offset + 2 + n;
  }
  const end = valueStart + len;
  if (end > limit) throw new DerError("value runs past its container");
  return { tag, start: offset, valueStart, end };
}

/** The TLVs directly inside a constructed TLV, which must fill it exactly. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let off = parent.valueStart;
  while (off < parent.end) {
    const t = readTlv(buf, off, parent.end);
    out.push(t);
    off = t.end;
  }
  return out;
}

/** Reads a whole buffer as exactly one TLV with the expected tag. */
export function readTop(buf: Uint8Array, tag: number): Tlv {
  const t = readTlv(buf, 0);
  if (t.tag !== tag) throw new DerError(`expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`);
  if (t.end !== buf.length) throw new DerError("trailing bytes after the top-level value");
  return t;
}

export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}`);
  return t;
}

export const value = (buf: Uint8Array, t: Tlv): Buffer => Buffer.from(buf.buffer, buf.byteOffset + t.valueStart, t.end - t.valueStart);
export const whole = (buf: Uint8Array, t: Tlv): Buffer => Buffer.from(buf.buffer, buf.byteOffset + t.start, t.end - t.start);

export function decodeOid(body: Uint8Array): string {
  if (body.length === 0) throw new DerError("empty OID");
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < body.length; i++) {
    const b = body[i]!;
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) throw new DerError("OID arc too large");
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0;
    } else if (i === body.length - 1) throw new DerError("truncated OID");
  }
  const [head, ...rest] = arcs as [number, ...number[]];
  const a0 = head < 80 ? Math.floor(head / 40) : 2;
  return [a0, head - a0 * 40, ...rest].join(".");
}

/** BIT STRING contents without the unused-bits byte; refuses partial bytes. */
export function bitStringBytes(buf: Uint8Array, t: Tlv): Buffer {
  const v = value(buf, expectTag(t, TAG.BIT_STRING, "bit string"));
  if (v.length < 1 || v[0] !== 0) throw new DerError("bit string with unused bits");
  return v.subarray(1);
}

// ---- PEM ----

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** DER of the first PEM block whose label is one of labels, or null. */
export function fromPem(pem: string, labels: readonly string[]): Buffer | null {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(pem);
  if (!m || !labels.includes(m[1]!)) return null;
  const body = m[2]!.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length === 0) return null;
  return Buffer.from(body, "base64");
}

/**
 * Gzip for the datapath route's large bodies, without compressing per
 * request what every node shares.
 *
 * A full state at 10,000 nodes is ≈740 KB, nearly all of it the shared
 * tenant's addresses, and an agent's first fetch reads all of it; the JSON
 * compresses ≈20× (a 2,000-node state: 141 KB to 6.6 KB). A gzip file may be
 * several members back to back (RFC 1952 2.2) and every gunzip in use reads
 * them all (Node's zlib, so the agent's fetch, curl, Go's compress/gzip), so
 * each large piece answers (answers.ts) is compressed once, as a member of
 * its own, and kept while the piece lives; the small per-request pieces
 * between them (revision, hash, framing: tens of bytes) are joined into a
 * stored member, not compressed: zlib's deflate state is ≈300 KB of memory
 * a call, and 2,000 answers woken by one write made the API's worst
 * event-loop stall 2–4× longer when each compressed its framing.
 */
import { gzipSync } from "node:zlib";

/** Pieces at least this long are compressed once and the member kept with them; shorter ones are joined per request. */
const SHARED_PIECE_BYTES = 1024;
/** Kept members are made once and sent many times: worth the better ratio. */
const SHARED_LEVEL = 6;

const members = new WeakMap<Buffer, Buffer>();

function sharedMember(piece: Buffer): Buffer {
  let member = members.get(piece);
  if (member === undefined) {
    member = gzipSync(piece, { level: SHARED_LEVEL });
    members.set(piece, member);
  }
  return member;
}

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

/** CRC-32 as gzip's trailer wants it (RFC 1952 8); zlib.crc32 is missing before Node 22.2. */
function crc32(data: Buffer): number {
  let c = -1;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** Largest length of one stored deflate block (RFC 1951 3.2.4). */
const STORED_BLOCK_MAX = 0xffff;
/** A gzip header with no name, time or flags; OS unknown. */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);

/** `data` as one gzip member of stored (uncompressed) deflate blocks. */
export function storedMember(data: Buffer): Buffer {
  const blocks = Math.max(1, Math.ceil(data.length / STORED_BLOCK_MAX));
  const out = Buffer.allocUnsafe(GZIP_HEADER.length + blocks * 5 + data.length + 8);
  let at = GZIP_HEADER.copy(out, 0);
  for (let b = 0; b < blocks; b++) {
    const start = b * STORED_BLOCK_MAX;
    const len = Math.min(STORED_BLOCK_MAX, data.length - start);
    out[at++] = b === blocks - 1 ? 1 : 0; // BFINAL on the last, BTYPE 00 (stored)
    out.writeUInt16LE(len, at);
    out.writeUInt16LE(~len & 0xffff, at + 2);
    at += 4;
    at += data.copy(out, at, start, start + len);
  }
  out.writeUInt32LE(crc32(data), at);
  out.writeUInt32LE(data.length >>> 0, at + 4);
  return out;
}

/** The body `pieces` make, as gzip members whose concatenation gunzips to the pieces' concatenation. */
export function gzipPieces(pieces: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let framing: Buffer[] = [];
  const flush = () => {
    if (framing.length === 0) return;
    out.push(storedMember(framing.length === 1 ? framing[0]! : Buffer.concat(framing)));
    framing = [];
  };
  for (const piece of pieces) {
    if (piece.length === 0) continue;
    if (piece.length < SHARED_PIECE_BYTES) {
      framing.push(piece);
      continue;
    }
    flush();
    out.push(sharedMember(piece));
  }
  flush();
  return out;
}

/**
 * Whether an Accept-Encoding header takes gzip (RFC 9110 12.5.3): named
 * (or as x-gzip, or by `*`) with a weight above zero, and not refused by
 * name. No header: identity only, as clients that never ask (wrk, a bare
 * http.request) expect.
 */
export function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false;
  let named: boolean | undefined;
  let star = false;
  for (const item of header.split(",")) {
    const [coding = "", ...params] = item.split(";").map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith("q="));
    const weight = q === undefined ? 1 : Number(q.slice(2));
    const wanted = Number.isFinite(weight) && weight > 0;
    if (coding === "gzip" || coding === "x-gzip") named = (named ?? false) || wanted;
    else if (coding === "*") star = wanted;
  }
  return named ?? star;
}

// The key-encryption key (KEK) that seals CA private keys at rest, and the
// sealing itself (AES-256-GCM). Where the KEK comes from: ca/kek-source.ts.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { inspect } from "node:util";

export const KEK_BYTES = 32;
const IV_BYTES = 12; // GCM's native nonce size
const TAG_BYTES = 16;
const SEALED_PREFIX = "v1";
const REDACTED = "[Kek: redacted]";

/**
 * Holds the KEK in a private field so it cannot reach a response body or a
 * log line by accident: JSON.stringify and util.inspect (hence console.log
 * and pino's serializers) see only a placeholder.
 */
export class Kek {
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length !== KEK_BYTES) throw new Error(`KEK must be ${KEK_BYTES} bytes, got ${key.length}`);
    this.#key = Buffer.from(key);
  }

  /**
   * Encrypts plaintext; `context` is bound as AAD (e.g. "tenant/slot/purpose")
   * so a sealed blob copied to another row or tenant fails to open.
   * Result: "v1.<iv>.<tag>.<ciphertext>", base64url parts, fit for a text column.
   */
  seal(plaintext: Uint8Array, context: string): string {
    const iv = randomBytes(IV_BYTES);
    const c = createCipheriv("aes-256-gcm", this.#key, iv);
    c.setAAD(Buffer.from(context, "utf8"));
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    return [SEALED_PREFIX, iv, c.getAuthTag(), ct].map((p) => (typeof p === "string" ? p : p.toString("base64url"))).join(".");
  }

  /** Decrypts a sealed blob; throws if the KEK, the context or any byte is wrong. */
  open(sealed: string, context: string): Buffer {
    const parts = sealed.split(".");
    if (parts.length !== 4 || parts[0] !== SEALED_PREFIX) throw new Error("sealed key has an unknown format");
    const [iv, tag, ct] = parts.slice(1).map((p) => Buffer.from(p, "base64url")) as [Buffer, Buffer, Buffer];
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new Error("sealed key has an unknown format");
    const d = createDecipheriv("aes-256-gcm", this.#key, iv);
    d.setAAD(Buffer.from(context, "utf8"));
    d.setAuthTag(tag);
    try {
      return Buffer.concat([d.update(ct), d.final()]);
    } catch {
      // Node's message ("Unsupported state or unable to authenticate data") says nothing useful.
      throw new Error("cannot decrypt a sealed key: wrong KEK (WEFT_KEK or key file) or corrupted data");
    }
  }

  /**
   * A short public name for this KEK (HMAC-SHA256 of `label` under it, 16 hex
   * digits): tells rows sealed under different KEKs apart without revealing
   * anything about the key.
   */
  id(label: string): string {
    return createHmac("sha256", this.#key).update(label, "utf8").digest("hex").slice(0, 16);
  }

  toJSON(): string {
    return REDACTED;
  }
  toString(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return REDACTED;
  }
}

/** Parses WEFT_KEK: 64 hex digits or base64/base64url of exactly 32 bytes. */
export function parseKek(text: string, source = "WEFT_KEK"): Kek {
  const s = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(s)) return new Kek(Buffer.from(s, "hex"));
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) {
    const bytes = Buffer.from(s, /[-_]/.test(s) ? "base64url" : "base64");
    if (bytes.length === KEK_BYTES) return new Kek(bytes);
  }
  // Never echo the value: it may be a real key with a typo.
  throw new Error(`${source} must be ${KEK_BYTES} bytes written as 64 hex digits or base64 (e.g. \`openssl rand -base64 32\`)`);
}

export interface KekSource {
  /** Usually process.env. */
  env: Readonly<Record<string, string | undefined>>;
  /** Key file for the embedded default, used only when WEFT_KEK is unset. */
  keyFile?: string;
}

/**
 * WEFT_KEK wins; otherwise the key file is read, or created (0600, parent
 * 0700) when missing. A key file readable by group or others is refused, as
 * ssh does with private keys.
 */
export function loadKek({ env, keyFile }: KekSource): { kek: Kek; source: "env" | "file-created" | "file" } {
  const fromEnv = env.WEFT_KEK;
  if (fromEnv !== undefined && fromEnv !== "") return { kek: parseKek(fromEnv), source: "env" };
  if (!keyFile) throw new Error("WEFT_KEK is not set and no KEK key file path was given");
  try {
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    // 'wx' fails if the file exists, so two replicas starting together cannot both write one.
    writeFileSync(keyFile, `${randomBytes(KEK_BYTES).toString("base64")}\n`, { mode: 0o600, flag: "wx" });
    return { kek: readKeyFile(keyFile), source: "file-created" };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  return { kek: readKeyFile(keyFile), source: "file" };
}

function readKeyFile(path: string): Kek {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) {
    throw new Error(`KEK key file ${path} has mode ${mode.toString(8)}; run \`chmod 600 ${path}\``);
  }
  return parseKek(readFileSync(path, "utf8"), `KEK key file ${path}`);
}

// SPDX-License-Identifier: Apache-2.0
/**
 * The state directory: the node's registration (its name and bearer
 * credential) survives restarts, so the one-time join token is spent once.
 * The credential is a secret: directory 0700, file 0600, written to a
 * temporary file and renamed so a crash never leaves half a file.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface SavedRegistration {
  /** The API this credential belongs to; a different --api means a different registration. */
  api: string;
  node: string;
  credential: string;
  registeredAt: string;
  /**
   * The node's block of the pod CIDR, as first learned (the registration's
   * answer, or GET /v1/nodes/{node} for a node registered before blocks
   * existed). Absent while unknown. The API never moves a node's block, so a
   * later answer naming another block is reported, not adopted.
   */
  podCidr?: string;
}

const FILE = "node.json";

/** Makes the state directory (0700), tightening it when it exists with looser bits. */
export function ensureStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if ((statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
  } catch (err) {
    throw new Error(`failed to make state directory ${dir}: ${(err as Error).message}`);
  }
}

export function loadRegistration(dir: string): SavedRegistration | null {
  const path = join(dir, FILE);
  if (!existsSync(path)) return null;
  let parsed: unknown;
  try {
    // The file is ours; a looser mode means someone changed it: tighten rather than leak further.
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`failed to read registration ${path}: ${(err as Error).message}`);
  }
  const r = parsed as Partial<SavedRegistration>;
  if (typeof r?.api !== "string" || typeof r.node !== "string" || typeof r.credential !== "string" || !r.credential) {
    throw new Error(`failed to read registration ${path}: not {api, node, credential}; remove it and register again with a join token`);
  }
  return {
    api: r.api,
    node: r.node,
    credential: r.credential,
    registeredAt: String(r.registeredAt ?? ""),
    ...(typeof r.podCidr === "string" && r.podCidr ? { podCidr: r.podCidr } : {}),
  };
}

export function saveRegistration(dir: string, registration: SavedRegistration): void {
  ensureStateDir(dir);
  writeSecret(join(dir, FILE), `${JSON.stringify(registration, null, 2)}\n`);
}

/** Writes a file readable by its owner only, atomically (temp file, then rename). */
export function writeSecret(path: string, content: string | Uint8Array): void {
  writeAtomic(path, content, 0o600);
}

export function writeAtomic(path: string, content: string | Uint8Array, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, content, { mode });
    // writeFileSync's mode is filtered by the umask and ignored for an existing file.
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (err) {
    throw new Error(`failed to write ${path}: ${(err as Error).message}`);
  }
}

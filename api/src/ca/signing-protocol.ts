// Messages between the signing pool and its workers (structured clone: a
// KeyObject inside a template crosses as a KeyObject). Jobs travel in
// batches: each message wakes a thread, and on a busy machine the wake-ups,
// not the signing, were the pool's cost when every job had its own.
import type { FieldError } from "./errors.ts";
import type { LeafJob } from "./leaf-issuer.ts";
import type { IssuedLeaf, LeafTemplate } from "./x509.ts";

export type WorkerJob = { slotKey: string; job: Omit<LeafJob, "slotKey" | "template"> };

export type ToWorker =
  | { type: "template"; slotKey: string; template: LeafTemplate }
  | { type: "forget"; slotKey: string }
  | { type: "jobs"; jobs: WorkerJob[] };

export type JobResult = { ok: true; leaf: IssuedLeaf } | { ok: false; input: FieldError[] } | { ok: false; message: string };

/** One result per job of the batch, in its order. */
export type FromWorker = { results: JobResult[] };

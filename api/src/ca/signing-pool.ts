// A pool of worker threads for the CPU-heavy half of X.509-SVID issuance
// (leaf-issuer.ts): the main thread's single JS thread otherwise caps
// issuance at one core whatever the machine has (bench/svid). Each job goes
// to the worker with the fewest in flight. A worker that dies fails the jobs
// it held with SigningUnavailableError (the API answers 503, never hangs)
// and is replaced; close() ends every worker and fails what is still queued.
import { Worker } from "node:worker_threads";
import { CaInputError } from "./errors.ts";
import type { LeafIssuer, LeafJob } from "./leaf-issuer.ts";
import type { FromWorker, ToWorker } from "./signing-protocol.ts";
import type { IssuedLeaf } from "./x509.ts";

/** The signing pool could not do a job (its worker died, or the pool is closing): retry later. */
export class SigningUnavailableError extends Error {
  override name = "SigningUnavailableError";
}

interface Pending {
  resolve: (leaf: IssuedLeaf) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  /** Slot keys whose template this worker holds. */
  templates: Set<string>;
}

/** From TypeScript source, a small .mjs entry loads tsx first (see there); compiled, the worker's own .js. */
const WORKER_URL = new URL(import.meta.url.endsWith(".ts") ? "./signing-worker.mjs" : "./signing-worker.js", import.meta.url);

/** Structured clone turns Buffers into plain Uint8Arrays; the DER helpers want Buffers. */
const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

export class SigningPool implements LeafIssuer {
  readonly #workers: Slot[] = [];
  #nextId = 0;
  #closed = false;
  /** Workers replaced after dying, for tests and logs. */
  replaced = 0;

  constructor(
    readonly size: number,
    private readonly onWorkerExit: (err: Error) => void = () => {},
  ) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`a signing pool needs at least one worker, got ${size}`);
    for (let i = 0; i < size; i++) this.#workers.push(this.#spawn());
  }

  #spawn(): Slot {
    const worker = new Worker(WORKER_URL);
    // Idle workers must not keep the process alive; the pool closes them at shutdown anyway.
    worker.unref();
    const slot: Slot = { worker, pending: new Map(), templates: new Set() };
    worker.on("message", (m: FromWorker) => {
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      if (m.ok) p.resolve({ ...m.leaf, der: asBuffer(m.leaf.der) });
      else if ("input" in m) p.reject(new CaInputError(m.input));
      else p.reject(new Error(m.message));
    });
    // An uncaught error inside the worker arrives as "error", then "exit".
    worker.on("error", (err) => this.#lost(slot, err));
    worker.on("exit", (code) => this.#lost(slot, new Error(`signing worker exited with code ${code}`)));
    return slot;
  }

  #lost(slot: Slot, err: Error): void {
    const i = this.#workers.indexOf(slot);
    if (i < 0) return; // "error" then "exit": handled once
    const failure = new SigningUnavailableError(this.#closed ? "the signing pool is closing" : `a signing worker stopped (${err.message}); retry the request`);
    for (const p of slot.pending.values()) p.reject(failure);
    slot.pending.clear();
    if (this.#closed) {
      this.#workers.splice(i, 1);
      return;
    }
    this.#workers[i] = this.#spawn();
    this.replaced++;
    this.onWorkerExit(err);
  }

  issue(job: LeafJob): Promise<IssuedLeaf> {
    if (this.#closed) return Promise.reject(new SigningUnavailableError("the signing pool is closing"));
    let slot = this.#workers[0]!;
    for (const s of this.#workers) if (s.pending.size < slot.pending.size) slot = s;
    const { slotKey, template, ...rest } = job;
    if (!slot.templates.has(slotKey)) {
      slot.worker.postMessage({ type: "template", slotKey, template } satisfies ToWorker);
      slot.templates.add(slotKey);
    }
    const id = this.#nextId++;
    return new Promise<IssuedLeaf>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ type: "job", id, slotKey, job: rest } satisfies ToWorker);
    });
  }

  /** Drops a slot's template (and its CA key) from every worker, e.g. when the slot's signer leaves the cache. */
  forget(slotKey: string): void {
    for (const s of this.#workers) {
      if (s.templates.delete(slotKey)) s.worker.postMessage({ type: "forget", slotKey } satisfies ToWorker);
    }
  }

  /** Fails what is in flight with SigningUnavailableError and ends every worker. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#workers].map((s) => s.worker.terminate()));
  }

  /** The worker threads' ids, for tests that kill one. */
  get threadIds(): number[] {
    return this.#workers.map((s) => s.worker.threadId);
  }

  /** Terminates one worker as if it crashed (tests): its jobs fail with SigningUnavailableError, a new worker takes its place. */
  async crash(threadId: number): Promise<void> {
    const s = this.#workers.find((x) => x.worker.threadId === threadId);
    await s?.worker.terminate();
  }
}

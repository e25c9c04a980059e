// A pool of worker threads for the CPU-heavy half of X.509-SVID issuance
// (leaf-issuer.ts): the main thread's single JS thread otherwise caps
// issuance at one core whatever the machine has (bench/svid).
//
// Jobs queue here and go to idle workers in batches: a worker gets a share of
// what queued while it was busy, and answers the whole batch in one message
// (a message per job cost more CPU than the signing: each wakes a thread).
// A worker that dies fails the jobs it held with SigningUnavailableError (the
// API answers 503, never hangs) and is replaced; close() ends every worker
// and fails what is queued or in flight.
import { Worker } from "node:worker_threads";
import { CaInputError } from "./errors.ts";
import type { LeafIssuer, LeafJob } from "./leaf-issuer.ts";
import type { FromWorker, ToWorker } from "./signing-protocol.ts";
import type { IssuedLeaf } from "./x509.ts";

/** The signing pool could not do a job (its worker died, or the pool is closing): retry later. */
export class SigningUnavailableError extends Error {
  override name = "SigningUnavailableError";
}

interface Queued {
  job: LeafJob;
  resolve: (leaf: IssuedLeaf) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  /** The batch this worker is signing, in order; empty when idle. */
  batch: Queued[];
  /** Slot keys whose template this worker holds. */
  templates: Set<string>;
  /** Whether it ever answered: a worker that dies before is failing to start, not crashing on a job. */
  answered: boolean;
}

/** Workers in a row that may die before answering once; then the pool stops respawning and refuses jobs. */
const MAX_START_FAILURES = 3;

/** From TypeScript source, a small .mjs entry loads tsx first (see there); compiled, the worker's own .js. */
const WORKER_URL = new URL(import.meta.url.endsWith(".ts") ? "./signing-worker.mjs" : "./signing-worker.js", import.meta.url);

/** Structured clone turns Buffers into plain Uint8Arrays; the DER helpers want Buffers. */
const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

export class SigningPool implements LeafIssuer {
  readonly #workers: Slot[] = [];
  #queue: Queued[] = [];
  #dispatchScheduled = false;
  #closed = false;
  #startFailures = 0;
  /** Set when workers keep dying at start-up: every job is refused with it. */
  #broken: SigningUnavailableError | undefined;
  /** Workers replaced after dying, for tests and logs. */
  replaced = 0;

  constructor(
    readonly size: number,
    private readonly onWorkerExit: (err: Error) => void = () => {},
    /** The worker's module; tests give one that fails. */
    private readonly workerUrl: URL = WORKER_URL,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`a signing pool needs at least one worker, got ${size}`);
    for (let i = 0; i < size; i++) this.#workers.push(this.#spawn());
  }

  #spawn(): Slot {
    const worker = new Worker(this.workerUrl);
    // Idle workers must not keep the process alive; the pool closes them at shutdown anyway.
    worker.unref();
    const slot: Slot = { worker, batch: [], templates: new Set(), answered: false };
    worker.on("message", (m: FromWorker) => {
      slot.answered = true;
      this.#startFailures = 0;
      const batch = slot.batch;
      slot.batch = [];
      m.results.forEach((r, i) => {
        const q = batch[i]!;
        if (r.ok) q.resolve({ ...r.leaf, der: asBuffer(r.leaf.der) });
        else if ("input" in r) q.reject(new CaInputError(r.input));
        else q.reject(new Error(r.message));
      });
      this.#dispatch();
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
    for (const q of slot.batch.splice(0)) q.reject(failure);
    if (!slot.answered && ++this.#startFailures >= MAX_START_FAILURES && !this.#broken) {
      this.#broken = new SigningUnavailableError(`signing workers fail to start (${err.message})`);
      this.onWorkerExit(this.#broken);
    }
    if (this.#closed || this.#broken) {
      this.#workers.splice(i, 1);
      // Nothing left to sign what is queued: fail it rather than let it wait forever.
      if (this.#workers.length === 0) for (const q of this.#queue.splice(0)) q.reject(this.#broken ?? failure);
      return;
    }
    this.#workers[i] = this.#spawn();
    this.replaced++;
    this.onWorkerExit(err);
    this.#dispatch();
  }

  issue(job: LeafJob): Promise<IssuedLeaf> {
    if (this.#closed) return Promise.reject(new SigningUnavailableError("the signing pool is closing"));
    if (this.#broken && this.#workers.length === 0) return Promise.reject(this.#broken);
    return new Promise<IssuedLeaf>((resolve, reject) => {
      this.#queue.push({ job, resolve, reject });
      if (!this.#dispatchScheduled) {
        this.#dispatchScheduled = true;
        // Next turn of the event loop: requests read in this one join the batch.
        setImmediate(() => {
          this.#dispatchScheduled = false;
          this.#dispatch();
        });
      }
    });
  }

  /** Hands the queue to the idle workers, an even share each. */
  #dispatch(): void {
    const idle = this.#workers.filter((s) => s.batch.length === 0);
    for (let k = 0; k < idle.length && this.#queue.length > 0; k++) {
      const slot = idle[k]!;
      const batch = this.#queue.splice(0, Math.ceil(this.#queue.length / (idle.length - k)));
      for (const { job } of batch) {
        if (slot.templates.has(job.slotKey)) continue;
        slot.worker.postMessage({ type: "template", slotKey: job.slotKey, template: job.template } satisfies ToWorker);
        slot.templates.add(job.slotKey);
      }
      slot.batch = batch;
      const jobs = batch.map(({ job: { slotKey, template: _, ...job } }) => ({ slotKey, job }));
      slot.worker.postMessage({ type: "jobs", jobs } satisfies ToWorker);
    }
  }

  /** Drops a slot's template (and its CA key) from every worker, e.g. when the slot's signer leaves the cache. */
  forget(slotKey: string): void {
    for (const s of this.#workers) {
      if (s.templates.delete(slotKey)) s.worker.postMessage({ type: "forget", slotKey } satisfies ToWorker);
    }
  }

  /** Fails what is queued or in flight with SigningUnavailableError and ends every worker. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const failure = new SigningUnavailableError("the signing pool is closing");
    for (const q of this.#queue.splice(0)) q.reject(failure);
    await Promise.all([...this.#workers].map((s) => s.worker.terminate()));
  }

  /** The worker threads' ids, for tests that kill one. */
  get threadIds(): number[] {
    return this.#workers.map((s) => s.worker.threadId);
  }

  /** Terminates one worker as if it crashed (tests): its jobs fail with SigningUnavailableError, a new worker takes its place. */
  async crash(threadId: number): Promise<void> {
    await this.#workers.find((x) => x.worker.threadId === threadId)?.worker.terminate();
  }
}

// A signing-pool worker thread: keeps the leaf templates (CA keys included)
// the main thread sent it, by slot, and answers each batch of jobs with one
// leaf, or the reason its CSR was refused, per job. Nothing else runs here.
import { parentPort } from "node:worker_threads";
import { CaInputError } from "./errors.ts";
import { verifyAndSign } from "./leaf-issuer.ts";
import type { LeafTemplate } from "./x509.ts";
import type { FromWorker, JobResult, ToWorker, WorkerJob } from "./signing-protocol.ts";

const port = parentPort;
if (!port) throw new Error("signing-worker.ts runs only as a worker thread");
const templates = new Map<string, LeafTemplate>();

function run({ slotKey, job }: WorkerJob): JobResult {
  try {
    const template = templates.get(slotKey);
    if (!template) throw new Error(`no template for slot ${slotKey} in this worker`);
    return { ok: true, leaf: verifyAndSign(template, job) };
  } catch (err) {
    return err instanceof CaInputError ? { ok: false, input: [...err.errors] } : { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
}

port.on("message", (m: ToWorker) => {
  if (m.type === "template") templates.set(m.slotKey, m.template);
  else if (m.type === "forget") templates.delete(m.slotKey);
  else port.postMessage({ results: m.jobs.map(run) } satisfies FromWorker);
});

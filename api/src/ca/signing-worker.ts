// A signing-pool worker thread: keeps the leaf templates (CA keys included)
// the main thread sent it, by slot, and answers each job with a leaf or the
// reason the CSR was refused. Nothing else runs here.
import { parentPort } from "node:worker_threads";
import { CaInputError } from "./errors.ts";
import { verifyAndSign } from "./leaf-issuer.ts";
import type { LeafTemplate } from "./x509.ts";
import type { ToWorker, FromWorker } from "./signing-protocol.ts";

const port = parentPort;
if (!port) throw new Error("signing-worker.ts runs only as a worker thread");
const templates = new Map<string, LeafTemplate>();

port.on("message", (m: ToWorker) => {
  if (m.type === "template") {
    templates.set(m.slotKey, m.template);
    return;
  }
  if (m.type === "forget") {
    templates.delete(m.slotKey);
    return;
  }
  let reply: FromWorker;
  try {
    const template = templates.get(m.slotKey);
    if (!template) throw new Error(`no template for slot ${m.slotKey} in this worker`);
    reply = { id: m.id, ok: true, leaf: verifyAndSign(template, m.job) };
  } catch (err) {
    reply =
      err instanceof CaInputError
        ? { id: m.id, ok: false, input: [...err.errors] }
        : { id: m.id, ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply);
});

// One flood client of bench/security/auth-flood.ts, in a worker thread: POSTs a
// 1 MB body of nested arrays to /v1/tenants without a token, back to back over
// a keep-alive connection of its own, until told to stop; then reports answers.
import { Agent, request } from "node:http";
import { parentPort, workerData } from "node:worker_threads";

const { base, bytes } = workerData;
const body = Buffer.from("[".repeat(bytes / 2) + "]".repeat(bytes / 2));
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const report = { statuses: {}, errors: 0 };
let stop = false;
parentPort.on("message", () => (stop = true));
parentPort.postMessage({ ready: true });
while (!stop) {
  await new Promise((resolve) => {
    const req = request(`${base}/v1/tenants`, { method: "POST", agent, headers: { "content-type": "application/json", "content-length": String(body.length) } }, (res) => {
      report.statuses[res.statusCode] = (report.statuses[res.statusCode] ?? 0) + 1;
      res.resume();
      res.on("end", resolve);
      res.on("error", resolve);
    });
    req.on("error", () => {
      report.errors++;
      resolve();
    });
    req.end(body);
  });
}
agent.destroy();
parentPort.postMessage({ report });

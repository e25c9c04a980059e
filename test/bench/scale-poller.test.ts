// bench/scale's poller after a failover: a moved poll answered 410 refetches
// the full state. When that full state already carries the wave's write (the
// survivor answered it after applying the write), the node has the change: the
// poller must record it as an answer with the change, and must not count the
// node as holding a poll while its full fetch is still in flight (the wave
// would start before the refetch, and the node would then never answer a
// change: "not woken", though not stale).
import { fork, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { Answer, NodeView } from "../../bench/scale/protocol.ts";

let server: Server | undefined;
let child: ChildProcess | undefined;
afterEach(async () => {
  child?.kill();
  child = undefined;
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

function ask(c: ChildProcess, msg: Record<string, unknown>): Promise<unknown> {
  const id = Math.floor(Math.random() * 1e9);
  return new Promise((resolve, reject) => {
    const on = (reply: { id: number; result?: unknown; error?: string }) => {
      if (reply.id !== id) return;
      c.off("message", on);
      if (reply.error) reject(new Error(reply.error));
      else resolve(reply.result);
    };
    c.on("message", on);
    c.send({ id, ...msg });
  });
}

const until = async (what: () => Promise<boolean>, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe("bench/scale poller", () => {
  it("a full refetch after a 410 that carries a change is an answer with the change, and the node is not held while it is in flight", async () => {
    // The survivor: knows no history back to the moved poll's `since` (410); its full state is slow to come and
    // is already the new state (revision 20, hash "new"); then polls from 20 are held.
    let fullRequests = 0;
    let releaseFull: (() => void) | undefined;
    server = createServer((req, res) => {
      const url = new URL(req.url!, "http://x");
      if (!url.searchParams.has("wait")) {
        fullRequests++;
        if (fullRequests === 1) {
          res.writeHead(200, { etag: '"old"', "x-weft-revision": "10" }).end("{}");
          return;
        }
        releaseFull = () => res.writeHead(200, { etag: '"new"', "x-weft-revision": "20" }).end("{}");
        return;
      }
      if (url.searchParams.get("since") === "10") {
        res.writeHead(410).end();
        return;
      }
      // held: never answered within the test
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    child = fork(new URL("../../bench/scale/poller.ts", import.meta.url).pathname, [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "ignore", "inherit", "ipc"] });
    await ask(child, { op: "fetch", endpoints: [base], waitSeconds: 30, nodes: [{ index: 0, name: "n0", credential: "c", home: 0 }] });
    await ask(child, { op: "collect" });
    await ask(child, { op: "hold" });
    await until(async () => releaseFull !== undefined);
    // The full refetch is written and not answered: the node holds no poll yet.
    await new Promise((r) => setTimeout(r, 100));
    const during = (await ask(child, { op: "view" })) as NodeView[];
    expect(during[0]!.held).toBe(false);
    releaseFull!();
    await until(async () => ((await ask(child!, { op: "view" })) as NodeView[])[0]!.held);
    const { answers } = (await ask(child, { op: "collect" })) as { answers: Answer[] };
    expect(answers.filter((a) => a.changed).map((a) => ({ revision: a.revision, full: a.full }))).toEqual([{ revision: 20, full: true }]);
  });
});

// SPDX-License-Identifier: Apache-2.0
// The agent's L7 proxy on loopback (test/agent/l7-*.test.ts): a document
// source as the API serves it, HTTP backends, and requests from a caller's
// loopback address.
import { Agent, createServer, request, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import type { L7DocumentAnswer } from "../../nodeagent/src/agent/client.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import type { L7DriverOptions } from "../../nodeagent/src/l7/driver.ts";

/**
 * A free loopback port (bound, then released) from this test worker's own
 * range below the ephemeral ports: a port the kernel picks for one worker
 * could be picked for another between its release here and HAProxy's bind,
 * and a burst then lands on another test's listener.
 */
export async function freePort(): Promise<number> {
  const worker = Number(process.env.VITEST_POOL_ID ?? 0) % 12;
  const base = 20_000 + worker * 1_000;
  for (let tries = 0; tries < 200; tries++) {
    const port = base + Math.floor(Math.random() * 1_000);
    // A port handed out earlier may not be bound yet: never hand it out twice.
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port in ${base}..${base + 999}`);
}

const handedOut = new Set<number>();

const bindable = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = createTcpServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });

export interface Backend {
  server: Server;
  port: number;
  hits: number;
  seen: IncomingHttpHeaders[];
}

/** An HTTP backend answering `answer(n)` for its n-th request (status, body, or a promise of them); "hang" never answers. */
export async function backend(answer: (n: number, method: string) => [number, string] | Promise<[number, string]> | "hang"): Promise<Backend> {
  const b: Backend = { server: createServer(), port: 0, hits: 0, seen: [] };
  b.server.on("request", (req, res) => {
    const n = b.hits++;
    b.seen.push(req.headers);
    req.resume();
    const a = answer(n, req.method ?? "");
    if (a === "hang") return;
    void Promise.resolve(a).then(([status, body]) => res.writeHead(status, { "content-type": "text/plain" }).end(body));
  });
  await new Promise<void>((r) => b.server.listen(0, "127.0.0.1", r));
  b.port = (b.server.address() as AddressInfo).port;
  return b;
}

/** Requests from callers' loopback addresses, a keep-alive agent per caller. */
export class Callers {
  private readonly agents = new Map<string, Agent>();

  /** One request from `caller`'s address to 127.0.0.1:port. */
  call(caller: { address: string }, port: number, o: { method?: string; path?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; type: string; headers: IncomingHttpHeaders }> {
    let agent = this.agents.get(caller.address);
    if (!agent) this.agents.set(caller.address, (agent = new Agent({ keepAlive: true, maxSockets: 8 })));
    return new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, localAddress: caller.address, method: o.method ?? "GET", path: o.path ?? "/", headers: o.headers ?? {}, agent, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), type: String(res.headers["content-type"] ?? ""), headers: res.headers }));
      });
      req.on("timeout", () => req.destroy(new Error("request timed out")));
      req.on("error", reject);
      req.end();
    });
  }

  /** Closes every connection; the next call opens a new one. */
  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}

/** The API's side: one document at a time, ETagged, 304 for the ETag held. */
export class DocumentSource {
  private n = 0;
  private etag = "";
  private doc: L7Document | null = null;
  set(doc: L7Document): void {
    this.doc = doc;
    this.etag = `"l7-${++this.n}"`;
  }
  get currentEtag(): string {
    return this.etag;
  }
  answer = async (etag: string | null): Promise<L7DocumentAnswer> => (etag === this.etag ? { kind: "unchanged" } : { kind: "document", etag: this.etag, body: structuredClone(this.doc) });
}

/** A driver's options as the loopback tests run it: quick polls and restarts, its log shown with L7_DEBUG=1. */
export const loopbackDriverOptions = (o: Pick<L7DriverOptions, "binary" | "stateDir" | "document" | "registry" | "listen" | "extraBinds"> & Partial<L7DriverOptions>): L7DriverOptions => ({
  pollMs: 200,
  backoff: { initialMs: 200, maxMs: 1_000 },
  log: (level, msg, fields) => process.env.L7_DEBUG && console.log(level, msg, fields),
  ...o,
});

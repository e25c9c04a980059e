// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's L7 proxy on loopback, without the kernel (test/agent/l7-*):
 * HTTP backends on 127.0.0.1, callers as loopback addresses (127.0.0.0/8 is
 * all local) a client binds its connections to, and the API's side of the
 * L7 document played by a DocumentSource.
 */
import { Agent, createServer, request, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import type { L7DocumentAnswer } from "../../nodeagent/src/agent/client.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";

/** A free loopback port (bound, then released). */
export async function freePort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface Backend {
  server: Server;
  port: number;
  hits: number;
  seen: IncomingHttpHeaders[];
}

type Answer = [number, string];

/** An HTTP backend answering `answer(n)` for its n-th request (status, body, or a promise of them); "hang" never answers. */
export async function backend(answer: (n: number, method: string) => Answer | Promise<Answer> | "hang"): Promise<Backend> {
  const b: Backend = { server: createServer(), port: 0, hits: 0, seen: [] };
  b.server.on("request", (req, res) => {
    const n = b.hits++;
    b.seen.push(req.headers);
    req.resume();
    const a = answer(n, req.method ?? "");
    if (a === "hang") return;
    if (Array.isArray(a)) res.writeHead(a[0], { "content-type": "text/plain" }).end(a[1]);
    else void a.then(([status, body]) => res.writeHead(status, { "content-type": "text/plain" }).end(body));
  });
  await new Promise<void>((r) => b.server.listen(0, "127.0.0.1", r));
  b.port = (b.server.address() as AddressInfo).port;
  return b;
}

export async function closeBackends(backends: readonly (Backend | undefined)[]): Promise<void> {
  for (const b of backends) b?.server.closeAllConnections();
  await Promise.all(backends.map((b) => b && new Promise((r) => b.server.close(r))));
}

export interface Answered {
  status: number;
  body: string;
  type: string;
  headers: IncomingHttpHeaders;
}

/** Keep-alive agents per caller address; destroy them to start over with new connections. */
export const agents = new Map<string, Agent>();

/** One request from `caller`'s address (a keep-alive agent per caller) to 127.0.0.1:port. */
export function call(caller: { address: string }, port: number, o: { method?: string; path?: string; headers?: Record<string, string> } = {}): Promise<Answered> {
  let agent = agents.get(caller.address);
  if (!agent) agents.set(caller.address, (agent = new Agent({ keepAlive: true, maxSockets: 8 })));
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

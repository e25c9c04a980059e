// SPDX-License-Identifier: Apache-2.0
// What the node's proxy answers on its own (issue 21), over raw sockets to
// the real HAProxy the agent drives, on loopback (no kernel): a header
// value holding a control character is refused with 400 problem+json and
// never reaches a backend (HAProxy 2.6's parser would forward it); no
// server, a cut response and a timeout are 503, 502 and 504 problem+json
// from the errorfiles the agent writes; and what HAProxy's HTTP/1 parser
// refuses before a request exists (a broken request line, a 100 KB
// header) is 400, problem+json where HAProxy uses errorfiles for those
// (3.3 on), HAProxy's compiled-in HTML on 2.6 (proxy-errors.ts says why).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AccessRecord } from "../../nodeagent/src/l7/access-log.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { PROXY_ERRORS, proxyErrorFiles } from "../../nodeagent/src/l7/proxy-errors.ts";
import { backend, DocumentSource, freePort, loopbackDriverOptions, type Backend } from "../support/l7-loopback.ts";
import { until, untilHolds } from "../support/until.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();

const CALLER = { address: "127.0.0.40", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/client" };

/** HAProxy's major and minor version, from `haproxy -v`. */
function haproxyVersion(): [number, number] {
  const m = /version (\d+)\.(\d+)/.exec(spawnSync(HAPROXY || "haproxy", ["-v"], { encoding: "utf8" }).stdout ?? "");
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Sends `bytes` from the caller's address and reads the one answer until the proxy closes (or the body is whole). */
function raw(port: number, bytes: Buffer | string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, localAddress: CALLER.address });
    const chunks: Buffer[] = [];
    const answer = (): RawAnswer | null => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf("\r\n\r\n");
      if (end < 0) return null;
      const [line, ...fields] = all.subarray(0, end).toString("latin1").split("\r\n");
      const headers = Object.fromEntries(fields.map((f) => [f.slice(0, f.indexOf(":")).toLowerCase(), f.slice(f.indexOf(":") + 1).trim()]));
      const body = all.subarray(end + 4);
      if (headers["content-length"] !== undefined && body.length < Number(headers["content-length"])) return null;
      return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(line!)?.[1] ?? 0), headers, body };
    };
    const done = () => {
      const a = answer();
      socket.destroy();
      if (a) resolve(a);
      else reject(new Error(`no whole answer: ${JSON.stringify(Buffer.concat(chunks).toString("latin1").slice(0, 300))}`));
    };
    socket.setTimeout(15_000, done);
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      if (answer()) done();
    });
    socket.on("end", done);
    // The proxy may answer and close before it has read all of a request it refused.
    socket.on("error", (err) => (chunks.length ? done() : reject(err)));
    socket.on("connect", () => socket.write(bytes));
  });
}

/** The answer is the problem of `status`: its content type, its exact length, a JSON body naming the status. */
function expectProblem(a: RawAnswer, status: number): void {
  expect(a.status).toBe(status);
  expect(a.headers["content-type"]).toBe("application/problem+json");
  expect(Number(a.headers["content-length"])).toBe(a.body.length);
  expect(JSON.parse(a.body.toString("utf8"))).toMatchObject({ type: "about:blank", status });
}

describe.skipIf(NO_HAPROXY)("the node's proxy's own answers (real HAProxy, raw sockets)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-errors-"));
  const registry = new Registry();
  const source = new DocumentSource();
  const records: AccessRecord[] = [];
  let driver: L7Driver;
  let ok: Backend, hang: Backend;
  /** Drops every connection once the request arrived: HAProxy's 502. */
  let cut: Server;
  let open: number, down: number, broken: number, slow: number, closed: number, listen: number;

  const frontend = (name: string, port: number, backendName: string): L7Document["frontends"][number] => ({
    name,
    tenant: "acme",
    service: name.slice(2),
    vip: "127.0.0.1",
    port,
    rules: [],
    defaultBackend: backendName,
    authorization: { governed: false, entries: [] },
  });

  beforeAll(async () => {
    ok = await backend(() => [200, "ok"]);
    hang = await backend(() => "hang");
    cut = createServer((req) => req.socket.destroy());
    await new Promise<void>((r) => cut.listen(0, "127.0.0.1", r));
    // A port nothing listens on: bound, then released.
    closed = await freePort();
    [open, down, broken, slow, listen] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    source.set({
      proxyAddress: "127.0.0.1",
      frontends: [frontend("f-open", open, "d-open"), frontend("f-down", down, "d-down"), frontend("f-broken", broken, "d-broken"), frontend("f-slow", slow, "d-slow")],
      backends: [
        { name: "d-open", servers: [{ name: "ok", address: "127.0.0.1", port: ok.port, weight: 1 }] },
        { name: "d-down", servers: [{ name: "gone", address: "127.0.0.1", port: closed, weight: 1 }] },
        { name: "d-broken", servers: [{ name: "cut", address: "127.0.0.1", port: (cut.address() as AddressInfo).port, weight: 1 }] },
        { name: "d-slow", servers: [{ name: "hang", address: "127.0.0.1", port: hang.port, weight: 1 }], backendRequestTimeoutMs: 300 },
      ],
      callers: [CALLER],
    });
    driver = new L7Driver(
      loopbackDriverOptions({
        binary: HAPROXY,
        stateDir,
        document: source.answer,
        registry,
        records: (batch) => records.push(...batch),
        listen: { address: "127.0.0.1", port: listen },
        extraBinds: [open, down, broken, slow].map((p) => `127.0.0.1:${p}`),
      }),
    );
    driver.start();
    await untilHolds("the proxy running", () => driver.status(), (s) => s.state === "running" && s.appliedEtag === source.currentEtag, 20_000);
  }, 30_000);

  afterAll(async () => {
    await driver?.stop();
    for (const s of [ok?.server, hang?.server, cut]) s?.closeAllConnections();
    await Promise.all([ok?.server, hang?.server, cut].map((s) => s && new Promise((r) => s.close(r))));
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("writes every errorfile as a whole problem response: HAProxy's status, the body's exact length", () => {
    const files = proxyErrorFiles(stateDir);
    expect(files.map((f) => f.path)).toEqual(PROXY_ERRORS.map((p) => join(stateDir, `l7-error-${p.status}.http`)));
    for (const [i, f] of files.entries()) {
      const text = readFileSync(f.path, "latin1");
      expect(text).toBe(f.content);
      const [head, body] = text.split("\r\n\r\n") as [string, string];
      const [line, ...fields] = head.split("\r\n");
      expect(line).toBe(`HTTP/1.1 ${PROXY_ERRORS[i]!.status} ${PROXY_ERRORS[i]!.title}`);
      expect(fields).toContain("content-type: application/problem+json");
      expect(fields).toContain(`content-length: ${Buffer.byteLength(body)}`);
      expect(JSON.parse(body)).toEqual({ type: "about:blank", ...PROXY_ERRORS[i] });
    }
  });

  it("refuses a header value holding a control character with 400 problem+json, before any backend sees it", async () => {
    const request = (value: Buffer) => Buffer.concat([Buffer.from("GET /open HTTP/1.1\r\nhost: open\r\nx-probe: a"), value, Buffer.from("b\r\nconnection: close\r\n\r\n")]);
    const before = ok.hits;
    for (const c of [0x00, 0x01, 0x08, 0x0b, 0x1f, 0x7f]) {
      const a = await raw(open, request(Buffer.from([c])));
      expectProblem(a, 400);
      expect(JSON.parse(a.body.toString()).detail).toMatch(/control character/);
    }
    expect(ok.hits).toBe(before);
    // HTAB and obs-text are a value's own: served.
    expect((await raw(open, request(Buffer.from([0x09])))).status).toBe(200);
    expect((await raw(open, request(Buffer.from([0xe9])))).status).toBe(200);
    expect(ok.hits).toBe(before + 2);
    const refused = await until("the refusals' records", 10_000, () => {
      const r = records.filter((x) => x.frontend === "f-open" && x.status === 400);
      return r.length >= 6 ? r : undefined;
    });
    expect(refused.every((r) => r.refused === "bad-request" && r.caller === CALLER.spiffeId)).toBe(true);
  });

  it("answers no server, a cut response and a timeout with 503, 502 and 504 problem+json", async () => {
    const get = (port: number) => raw(port, "GET /x HTTP/1.1\r\nhost: x\r\n\r\n");
    expectProblem(await get(down), 503);
    expectProblem(await get(broken), 502);
    expectProblem(await get(slow), 504);
  });

  it("answers what HTTP/1 parsing refuses with 400: problem+json where HAProxy uses errorfiles for it, its own HTML on 2.6", async () => {
    const refusals = [
      await raw(open, "GARBAGE\r\n\r\n"),
      await raw(open, `GET /open HTTP/1.1\r\nhost: open\r\nx-big: ${"a".repeat(100_000)}\r\n\r\n`),
      await raw(open, "GET /op\x00en HTTP/1.1\r\nhost: open\r\n\r\n"),
    ];
    const [major, minor] = haproxyVersion();
    for (const a of refusals) {
      if (major > 3 || (major === 3 && minor >= 3)) expectProblem(a, 400);
      else {
        // HAProxy 2.6's H1 mux answers these before a stream exists, from its compiled-in messages only
        // (mux_h1.c h1_send_error): when this fails, the HAProxy in use applies the errorfiles here too.
        expect(a.status).toBe(400);
        expect(a.headers["content-type"]).toBe("text/html");
      }
    }
  }, 30_000);
});

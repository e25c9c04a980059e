// SPDX-License-Identifier: Apache-2.0
// The proxy's request records reach the agent through HAProxy's ring and
// the agent's record socket (nodeagent/src/l7/record-socket.ts): frames
// are read whole however the stream is cut; HAProxy's own announcement of
// what a full ring dropped adds up with what arrived (the real binary, a
// ring made small); and a burst the agent reads late (its event loop held,
// as a busy agent's is) arrives whole, where the 64 KiB stdout pipe it
// replaced dropped all but the first few hundred records. A connection is
// read in batches (a rest after each read), not a wake-up per write.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { dropNotice, FrameReader, MAX_FRAME, RecordSocket } from "../../nodeagent/src/l7/record-socket.ts";
import { proxyErrorFiles } from "../../nodeagent/src/l7/proxy-errors.ts";
import { recordSocketPath, renderConfig } from "../../nodeagent/src/l7/render.ts";
import { backend, DocumentSource, freePort, loopbackDriverOptions, type Backend } from "../support/l7-loopback.ts";
import { until, untilHolds } from "../support/until.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();
const CALLER = { address: "127.0.0.20", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/web" };

const frame = (m: string) => Buffer.concat([Buffer.from(`${Buffer.byteLength(m)} `), Buffer.from(m)]);

/** A document with one open frontend on `port` to `server`. */
const openDocument = (port: number, server: number): L7Document => ({
  proxyAddress: "127.0.0.1",
  frontends: [{ name: "f-open", tenant: "acme", service: "open", vip: "127.0.0.1", port, rules: [], defaultBackend: "d-open", authorization: { governed: false, entries: [] } }],
  backends: [{ name: "d-open", servers: [{ name: "s", address: "127.0.0.1", port: server, weight: 1 }] }],
  callers: [CALLER],
});

/**
 * Sends `count` keep-alive GETs (8 at a time) from a child process, which
 * writes how many were answered 200 to `doneFile` when it is through: the
 * test's own event loop may be held meanwhile.
 */
function requestsFromChild(port: number, count: number, doneFile: string): void {
  const script = `
    const http = require("node:http");
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    let sent = 0, ok = 0, done = 0;
    const next = () => {
      if (sent >= ${count}) return;
      sent++;
      http.get({ host: "127.0.0.1", port: ${port}, path: "/burst", agent, localAddress: "${CALLER.address}" }, (res) => {
        res.resume();
        res.on("end", () => { if (res.statusCode === 200) ok++; finish(); });
      }).on("error", finish);
    };
    const finish = () => { if (++done === ${count}) { require("node:fs").writeFileSync(${JSON.stringify(doneFile)}, String(ok)); process.exit(0); } next(); };
    for (let i = 0; i < 8; i++) next();`;
  spawn(process.execPath, ["-e", script], { stdio: "ignore" }).unref();
}

/** An HTTP backend in its own process (this one's event loop is held during the burst), answering 200; ended with the test. */
async function backendProcess(port: number): Promise<() => void> {
  const child = spawn(process.execPath, ["-e", `require("node:http").createServer((q, s) => { q.resume(); s.end("ok"); }).listen(${port}, "127.0.0.1")`], { stdio: "ignore" });
  const stop = () => void child.kill("SIGKILL");
  await until("the backend process listens", 10_000, () => new Promise<true | undefined>((resolve) => {
    const s = connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
    s.on("error", () => resolve(undefined));
  })).catch((err: Error) => {
    stop();
    throw err;
  });
  return stop;
}

/** Holds this thread (and so the agent's event loop) until `file` exists, at most boundMs. */
function holdUntilFile(file: string, boundMs: number): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + boundMs;
  while (!existsSync(file) && Date.now() < deadline) Atomics.wait(cell, 0, 0, 10);
}

describe("octet-counted records from HAProxy's ring", () => {
  it("reads every frame whole however the stream is cut", () => {
    const message = fc.string({ unit: "binary", maxLength: 300 });
    fc.assert(
      fc.property(fc.array(message, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 10 }), (messages, cuts) => {
        const stream = Buffer.concat(messages.map(frame));
        const at = [...new Set(cuts.map((c) => (stream.length ? c % stream.length : 0)))].sort((a, b) => a - b);
        const got: string[] = [];
        const reader = new FrameReader((m) => got.push(m));
        let from = 0;
        for (const to of [...at, stream.length]) {
          expect(reader.push(stream.subarray(from, to))).toBe(true);
          from = to;
        }
        // Strings with lone surrogates do not survive UTF-8 either way: compare what the bytes say.
        expect(got).toEqual(messages.map((m) => Buffer.from(m).toString("utf8")));
      }),
    );
  });

  it("refuses a stream that is not such frames", () => {
    const refuses = (bytes: string) => new FrameReader(() => undefined).push(Buffer.from(bytes));
    expect(refuses("x5 hello")).toBe(false);
    expect(refuses(" 5 hello")).toBe(false);
    expect(refuses("123456 ")).toBe(false);
    expect(refuses(`${MAX_FRAME + 1} {`)).toBe(false);
    expect(refuses("5 hello{")).toBe(false);
    // A length still arriving is not a fault.
    expect(refuses("12")).toBe(true);
  });

  it("reads a connection in batches: what arrives while it rests after a read is taken at once, in order", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-record-batches-"));
    const reads = vi.spyOn(FrameReader.prototype, "push");
    const got: string[] = [];
    // A rest long enough that the writes below all land within it, however loaded the machine.
    const socket = await RecordSocket.listen(join(dir, "records.sock"), (m) => void got.push(m), () => undefined, 5_000);
    const client = connect(join(dir, "records.sock"));
    try {
      await new Promise<void>((resolve) => client.once("connect", resolve));
      client.write(frame("record 0"));
      await until("the first record", 5_000, () => (got.length === 1 ? true : undefined));
      // The connection rests now: 99 more records, one write each, a few milliseconds apart (read as they came, each would be a read).
      for (let i = 1; i < 100; i++) {
        client.write(frame(`record ${i}`));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await until("every record", 10_000, () => (got.length === 100 ? true : undefined));
      expect(got).toEqual(Array.from({ length: 100 }, (_, i) => `record ${i}`));
      // The first record; the one read before the connection stopped reading to rest; the rest at once.
      expect(reads.mock.calls.length).toBeLessThanOrEqual(3);
    } finally {
      reads.mockRestore();
      client.destroy();
      await socket.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("knows HAProxy's announcement of dropped records and nothing else", () => {
    expect(dropNotice("1 event dropped")).toBe(1);
    expect(dropNotice("76757 events dropped")).toBe(76757);
    expect(dropNotice("events dropped")).toBeNull();
    expect(dropNotice('{"path":"1 event dropped"}')).toBeNull();
    expect(dropNotice("Proxy L7 started.")).toBeNull();
  });
});

describe.skipIf(NO_HAPROXY)("the record path with the real HAProxy (loopback)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-records-"));
  let server: Backend;
  let port: number;

  beforeAll(async () => {
    server = await backend(() => [200, "ok"]);
    port = await freePort();
  });

  afterAll(async () => {
    server.server.closeAllConnections();
    await new Promise((r) => server.server.close(r));
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("announces what a full ring dropped, and the announcements and the records add up to the requests", async () => {
    // The agent's config with a ring of 64 KiB, read by a socket that reads nothing until the requests are done.
    const dir = mkdtempSync(join(stateDir, "small-"));
    const listen = await freePort();
    const config = renderConfig(openDocument(port, server.port), { stateDir: dir, callersMap: join(dir, "callers.map"), listen: { address: "127.0.0.1", port: listen }, extraBinds: [`127.0.0.1:${port}`] })
      .replace(/^  size \d+$/m, "  size 65536")
      .replace("  master-worker\n", "");
    writeFileSync(join(dir, "callers.map"), `${CALLER.address} ${CALLER.tenant}|${CALLER.spiffeId}\n`);
    for (const e of proxyErrorFiles(dir)) writeFileSync(e.path, e.content);
    writeFileSync(join(dir, "haproxy.cfg"), config);
    const records: string[] = [];
    let announced = 0;
    const sockets: Socket[] = [];
    const sink = createServer((s) => {
      s.pause();
      sockets.push(s);
      const reader = new FrameReader((m) => {
        const n = dropNotice(m);
        if (n !== null) announced += n;
        else if (m.startsWith("{")) records.push(m);
      });
      s.on("data", (c: Buffer) => void reader.push(c));
    });
    await new Promise<void>((r) => sink.listen(recordSocketPath(dir), r));
    const proxy = spawn(HAPROXY, ["-db", "-f", join(dir, "haproxy.cfg")], { stdio: "ignore" });
    try {
      await until("the proxy answers", 10_000, async () => ((await get(port)) === 200 ? true : undefined));
      await until("the forwarder connected", 10_000, () => (sockets.length > 0 ? true : undefined));
      let answered = 1;
      for (let i = 0; i < 100; i++) answered += (await Promise.all(Array.from({ length: 20 }, () => get(port)))).filter((s) => s === 200).length;
      for (const s of sockets) s.resume();
      // HAProxy announces its drops ahead of the next record that fits: one more request, once the ring has room.
      await until("the ring drained", 10_000, async () => (records.length + announced >= answered ? true : (await get(port), answered++, undefined)));
      expect(announced).toBeGreaterThan(0);
      // The notice races the requests of HAProxy's other thread by a few; 2,000 records of ~450 bytes in a 64 KiB ring drop most.
      expect(Math.abs(records.length + announced - answered)).toBeLessThanOrEqual(4);
      expect(JSON.parse(records[0]!)).toMatchObject({ frontend: "f-open", caller: CALLER.spiffeId, status: 200 });
    } finally {
      proxy.kill("SIGKILL");
      sink.close();
      for (const s of sockets) s.destroy();
    }
  }, 60_000);

  it("keeps every record of a burst the agent reads late, and listens on a socket only root may use", async () => {
    const dir = mkdtempSync(join(stateDir, "driver-"));
    const serverPort = await freePort();
    const stopBackend = await backendProcess(serverPort);
    const source = new DocumentSource();
    source.set(openDocument(port, serverPort));
    const registry = new Registry();
    const driver = new L7Driver(loopbackDriverOptions({ binary: HAPROXY, stateDir: dir, document: source.answer, registry, listen: { address: "127.0.0.1", port: await freePort() }, extraBinds: [`127.0.0.1:${port}`] }));
    const counted = async () => {
      const m = /^weft_http_requests_total\{tenant="acme",service="open",route="",code_class="2xx",refused=""\} (\d+)$/m.exec(await registry.metrics());
      return m ? Number(m[1]) : 0;
    };
    driver.start();
    try {
      await untilHolds("the proxy running", () => driver.status(), (s) => s.state === "running", 20_000);
      expect(statSync(recordSocketPath(dir)).mode & 0o777).toBe(0o600);
      await until("a first record", 10_000, async () => ((await get(port)) === 200 && (await counted()) > 0 ? true : undefined));
      const before = await counted();
      const done = join(dir, "burst-done");
      requestsFromChild(port, 3_000, done);
      holdUntilFile(done, 30_000);
      const ok = Number(readFileSync(done, "utf8"));
      expect(ok).toBe(3_000);
      await until("every record of the burst", 15_000, async () => ((await counted()) - before >= ok ? true : undefined));
      const text = await registry.metrics();
      expect((await counted()) - before).toBe(ok);
      expect(text).toMatch(/^weft_agent_l7_records_dropped_total\{stage="proxy"\} 0$/m);
      expect(text).toMatch(/^weft_agent_l7_dropped_log_records 0$/m);
      expect(text).toMatch(/^weft_agent_l7_unreadable_log_lines_total 0$/m);
    } finally {
      await driver.stop();
      stopBackend();
    }
    expect(existsSync(recordSocketPath(dir))).toBe(false);
  }, 90_000);

  it("closes a connection to the record socket that sends something else, and counts it", async () => {
    const dir = mkdtempSync(join(stateDir, "forged-"));
    const source = new DocumentSource();
    source.set(openDocument(port, server.port));
    const registry = new Registry();
    const driver = new L7Driver(loopbackDriverOptions({ binary: HAPROXY, stateDir: dir, document: source.answer, registry, listen: { address: "127.0.0.1", port: await freePort() }, extraBinds: [`127.0.0.1:${port}`] }));
    driver.start();
    try {
      await untilHolds("the proxy running", () => driver.status(), (s) => s.state === "running", 20_000);
      const s = connect(recordSocketPath(dir));
      const closed = new Promise((r) => s.on("close", r));
      s.on("error", () => undefined);
      s.write("GET / HTTP/1.1\r\n\r\n");
      await closed;
      expect(await registry.metrics()).toMatch(/^weft_agent_l7_unreadable_log_lines_total 1$/m);
    } finally {
      await driver.stop();
    }
  }, 60_000);
});

/** One GET from the caller's address; its status (0 when it failed). */
function get(port: number): Promise<number> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port, localAddress: CALLER.address }, () => s.write(`GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`));
    let text = "";
    s.on("data", (c: Buffer) => (text += c.toString()));
    s.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    s.on("error", () => resolve(0));
  });
}

// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's end of the proxy's request records (render.ts RECORD_RING):
 * HAProxy writes each record into an in-memory ring, and the ring's
 * forwarder sends them to this unix stream socket in the agent's state
 * directory (mode 600: only root reaches it, so no one else can forge a
 * record), octet-counted as RFC 6587 frames them: `<length> <record>`.
 *
 * Why not the pipe on HAProxy's stdout: a worker that finds the pipe's
 * 64 KiB full drops the record, and at saturation the agent is one of
 * several processes on few cores (bench:l7 lost about a fifth of them).
 * The ring holds RECORD_RING_BYTES; TCP-like backpressure on the stream
 * keeps the rest waiting in it, and the forwarder writes many records per
 * send, where the pipe took one write per request.
 *
 * Each connection is read in batches: after a read it rests READ_PAUSE_MS,
 * while the records gather in the socket (and, past its buffer, in the
 * ring), then one wake-up reads them all. Read as they came, a read held
 * about 6 records at bench:l7's rates (strace: 3.2 KB on average), and the
 * wake-up, the read and the stream's event around each cost the agent more
 * than handling the records did.
 *
 * What still cannot be kept is never silent: when the ring is full HAProxy
 * drops the record, and writes "N events dropped" into the ring ahead of
 * the next one that fits (dropNotice); the drops not yet announced are in
 * `show events` (runtime-api.ts ringDropped).
 *
 * Except on a reload, and silently: a worker told to stop (SIGUSR1 from
 * the master, as the new worker starts) closes its ring's forwarder at
 * once (HAProxy's sink.c, "if stopping was requested, close immediately",
 * in 2.6 and still upstream). Records still in its ring, and every record
 * of the requests it goes on serving until they end (hard-stop-after,
 * 60 s), stay in a ring nobody reads and go with the worker: such requests
 * reach no metric, flow, span or outlier count. Seen with a request in
 * flight across a reload (its record never arrived). Not fixed: reading
 * the old worker's ring through the master CLI (`@!<pid> show events`)
 * dumps what it holds (forwarded or not: it would need de-duplicating)
 * but did not follow what came later, and the worker exits as its last
 * request ends, so its last records would race its exit anyway.
 */
import { createServer, type Server, type Socket } from "node:net";
import { chmodSync, rmSync } from "node:fs";

/** The longest frame taken: HAProxy cuts a record at LOG_RECORD_MAX, so a longer length is not HAProxy's framing. */
export const MAX_FRAME = 8_192;
/** Workers forwarding at once: the serving one and the old ones of reloads still finishing. */
const MAX_CONNECTIONS = 32;
/** Waiting for the workers' last records after HAProxy stopped. */
const DRAIN_MS = 1_000;
/**
 * How long a connection rests after each read: records reach /metrics,
 * outlier ejection and flows this much later at most. A rest also caps how
 * fast the agent can read: what the socket holds (HAProxy's send buffer,
 * about 150 KiB of records: wmem_default) per rest and read, so 10 ms would
 * cap it near 15 MB (30,000 records) a second, about what one proxy thread
 * serves on loopback; 2 ms lifts that fivefold and still gathers about 40
 * records a read at 20,000 a second (6 without rests).
 */
export const READ_PAUSE_MS = 2;

/** HAProxy's note that its ring was full: how many records it dropped (sink.c), or null for any other message. */
export function dropNotice(message: string): number | null {
  const m = /^(\d{1,10}) events? dropped$/.exec(message);
  return m ? Number(m[1]) : null;
}

/**
 * Splits a stream of octet-counted frames. Keeps what a chunk leaves of a
 * frame for the next one; false once the stream is not such frames (it
 * cannot be resynchronised: the connection is closed).
 */
export class FrameReader {
  private rest: Buffer | null = null;

  constructor(private readonly onFrame: (message: string) => void) {}

  push(chunk: Buffer): boolean {
    const buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    this.rest = null;
    let at = 0;
    while (at < buf.length) {
      const space = buf.indexOf(0x20, at);
      const digits = (space < 0 ? buf.length : space) - at;
      if (digits > 5 || !isDigits(buf, at, at + digits)) return false;
      // No space yet after a few digits: the length's end is in the next chunk.
      if (space < 0) break;
      if (digits === 0) return false;
      const length = digitsValue(buf, at, space);
      if (length > MAX_FRAME) return false;
      const end = space + 1 + length;
      if (end > buf.length) break;
      this.onFrame(buf.toString("utf8", space + 1, end));
      at = end;
    }
    if (at < buf.length) this.rest = buf.subarray(at);
    return true;
  }
}

/** The number the ASCII digits in [from, to) write (checked by isDigits; at most 5 of them). */
function digitsValue(buf: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + buf[i]! - 0x30;
  return n;
}

function isDigits(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i]! < 0x30 || buf[i]! > 0x39) return false;
  return true;
}

export class RecordSocket {
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  /**
   * Listens on `path` (a socket an earlier agent left is replaced), one
   * FrameReader per connection; `broken` is told of a connection whose
   * bytes are not frames, which is closed.
   */
  static listen(path: string, onMessage: (message: string) => void, broken: (why: string) => void, readPauseMs = READ_PAUSE_MS): Promise<RecordSocket> {
    rmSync(path, { force: true });
    // The smallest buffer: while a connection rests, Node stops reading it at the first chunk, so the records wait in the kernel and no wake-up is spent on them.
    const server = createServer({ highWaterMark: 1 });
    const self = new RecordSocket(server, path);
    server.maxConnections = MAX_CONNECTIONS;
    server.on("connection", (socket) => {
      self.sockets.add(socket);
      const frames = new FrameReader(onMessage);
      let resting: NodeJS.Timeout | null = null;
      /** Takes all the connection holds now; false once it was not frames (closed). */
      const take = (): boolean => {
        for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
          if (frames.push(chunk)) continue;
          broken("a connection to the record socket sent bytes that are not octet-counted records; closed it");
          socket.destroy();
          return false;
        }
        return true;
      };
      socket.on("readable", () => {
        if (resting || !take() || readPauseMs <= 0) return;
        resting = setTimeout(() => {
          resting = null;
          take();
        }, readPauseMs);
      });
      socket.on("error", () => socket.destroy());
      socket.on("close", () => {
        if (resting) clearTimeout(resting);
        self.sockets.delete(socket);
      });
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        try {
          chmodSync(path, 0o600);
        } catch (err) {
          server.close();
          return reject(err as Error);
        }
        resolve(self);
      });
    });
  }

  /** Stops listening; the workers' connections get DRAIN_MS to deliver what they hold (HAProxy has stopped: they end), then are cut. */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    const deadline = Date.now() + DRAIN_MS;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sockets) s.destroy();
    await closed;
    rmSync(this.path, { force: true });
  }
}

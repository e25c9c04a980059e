// Raw HTTP/1.1 over loopback for what app.inject cannot send: bytes that are
// not valid UTF-8 or not allowed in a request line or header, and framing.
import { connect } from "node:net";

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Sends `bytes` and reads until the server closes the connection or a whole
 * response (by Content-Length) has arrived. Rejects after `timeoutMs`: a hang.
 */
export function rawRequest(port: number, bytes: Buffer, timeoutMs: number): Promise<RawResponse | "closed-without-response"> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`no answer within ${timeoutMs} ms`))), timeoutMs);
    const tryParse = (final: boolean) => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf("\r\n\r\n");
      if (end < 0) {
        if (final) finish(() => (all.length === 0 ? resolve("closed-without-response") : reject(new Error(`truncated answer: ${all.toString("latin1").slice(0, 200)}`))));
        return;
      }
      const [statusLine, ...lines] = all.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1] ?? NaN);
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(":");
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const body = all.subarray(end + 4);
      const length = headers["content-length"] === undefined ? undefined : Number(headers["content-length"]);
      if ((length !== undefined && body.length >= length) || final) finish(() => resolve({ status, headers, body: length === undefined ? body : body.subarray(0, length) }));
    };
    socket.on("data", (c) => {
      chunks.push(c);
      tryParse(false);
    });
    socket.on("end", () => tryParse(true));
    socket.on("close", () => tryParse(true));
    socket.on("error", (err) => {
      // A server that answered and reset the connection still answered.
      if (chunks.length > 0) tryParse(true);
      else finish(() => (/(ECONNRESET|EPIPE)/.test(err.message) ? resolve("closed-without-response") : reject(err)));
    });
    socket.write(bytes);
  });
}

/** A request from its parts, as bytes: the request target and header values are taken byte for byte (latin1). */
export function rawBytes(opts: { method: string; target: Buffer | string; headers?: [string, Buffer | string][]; body?: Buffer | string }): Buffer {
  const b = (v: Buffer | string) => (typeof v === "string" ? Buffer.from(v, "latin1") : v);
  const parts: Buffer[] = [Buffer.from(`${opts.method} `), b(opts.target), Buffer.from(" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n")];
  const body = opts.body === undefined ? undefined : b(opts.body);
  for (const [k, v] of opts.headers ?? []) parts.push(Buffer.from(`${k}: `), b(v), Buffer.from("\r\n"));
  if (body !== undefined && !(opts.headers ?? []).some(([k]) => /^(content-length|transfer-encoding)$/i.test(k))) {
    parts.push(Buffer.from(`Content-Length: ${body.length}\r\n`));
  }
  parts.push(Buffer.from("\r\n"));
  if (body !== undefined) parts.push(body);
  return Buffer.concat(parts);
}

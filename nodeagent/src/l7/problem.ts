// SPDX-License-Identifier: Apache-2.0
/** The answers the node's proxy makes itself, as RFC 9457 problems in haproxy.cfg. */

export interface Problem {
  status: number;
  title: string;
  detail: string;
}

/** The problem's JSON body (RFC 9457). */
const problemBody = (p: Problem) => JSON.stringify({ type: "about:blank", title: p.title, status: p.status, detail: p.detail });

/** An `http-request return` of a problem with extra response headers; all of it is the agent's own text (names, numbers and fixed words), never the client's. */
export function problemReturn(p: Problem, headers: readonly [string, string][] = []): string {
  const body = problemBody(p);
  if (body.includes("'")) throw new Error(`failed to render a problem: ${body} holds a quote`);
  const hdr = headers.map(([name, value]) => ` hdr ${name} ${value}`).join("");
  return `http-request return status ${p.status} content-type application/problem+json${hdr} string '${body}'`;
}

/**
 * The problem as a whole HTTP/1.1 response, as HAProxy's `errorfile` reads
 * one: status line, headers with the body's exact length, blank line, body.
 * `close` adds `connection: close` (where HAProxy's own answer for that
 * status has it: the connection ends after it).
 */
export function problemResponse(p: Problem, close: boolean): string {
  const body = problemBody(p);
  const head = [`HTTP/1.1 ${p.status} ${p.title}`, "content-type: application/problem+json", `content-length: ${Buffer.byteLength(body)}`, "cache-control: no-cache", ...(close ? ["connection: close"] : [])];
  return `${head.join("\r\n")}\r\n\r\n${body}`;
}

// SPDX-License-Identifier: Apache-2.0
/** The answers the node's proxy makes itself, as RFC 9457 problems in haproxy.cfg. */

export interface Problem {
  status: number;
  title: string;
  detail: string;
}

/** An `http-request return` of a problem with extra response headers; all of it is the agent's own text (names, numbers and fixed words), never the client's. */
export function problemReturn(p: Problem, headers: readonly [string, string][] = []): string {
  const body = JSON.stringify({ type: "about:blank", title: p.title, status: p.status, detail: p.detail });
  if (body.includes("'")) throw new Error(`failed to render a problem: ${body} holds a quote`);
  const hdr = headers.map(([name, value]) => ` hdr ${name} ${value}`).join("");
  return `http-request return status ${p.status} content-type application/problem+json${hdr} string '${body}'`;
}

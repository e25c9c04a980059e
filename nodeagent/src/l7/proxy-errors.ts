// SPDX-License-Identifier: Apache-2.0
/**
 * What the node's proxy answers on its own (issue 21), as RFC 9457
 * problems, pure like render.ts, which places the lines:
 *
 * - every status HAProxy can generate gets an `errorfile`: a whole HTTP
 *   response (problem+json, exact content-length) the agent writes in its
 *   state directory (proxyErrorFiles) before HAProxy reads the config.
 *   These are the answers of a request's stream: no server up (503), a
 *   backend that failed (502) or timed out (504), a body held back (408),
 *   an internal error (500). `http-error ... string` did as much for
 *   those, but only an errorfile is what HAProxy's HTTP/1 parser may use
 *   for the errors it answers before a stream exists (a broken request
 *   line, headers past its buffer, a request that never completes): from
 *   HAProxy 3.3 it does (upstream d252ec2be, issue #3032). HAProxy 2.6,
 *   Debian's, always answers those with its compiled-in text/html (its
 *   mux_h1.c h1_send_error reads an errorfile only to see whether it is
 *   empty), with the right status; no configuration changes that.
 * - a request whose header values hold a control character other than
 *   HTAB (NUL, 0x01-0x1f, DEL) is refused with 400: HAProxy 2.6's parser
 *   forwards them (it stops a value at CR or LF only), and RFC 9110 5.5
 *   makes NUL, CR and LF invalid everywhere; the others are refused as
 *   nghttp2 (Envoy's HTTP/2 codec) refuses them, since a backend may read
 *   them as separators HAProxy did not see.
 */
import { problemResponse, problemReturn, type Problem } from "./problem.ts";

/** Every status HAProxy 2.6 generates itself (its errorfile list) but 200 (monitor-uri, unused). */
export const PROXY_ERRORS: readonly Problem[] = [
  { status: 400, title: "Bad Request", detail: "the L7 proxy could not read the request" },
  { status: 401, title: "Unauthorized", detail: "the L7 proxy requires authentication" },
  { status: 403, title: "Forbidden", detail: "the L7 proxy refused the request" },
  { status: 404, title: "Not Found", detail: "the L7 proxy has no such resource" },
  { status: 405, title: "Method Not Allowed", detail: "the L7 proxy does not allow this method" },
  { status: 407, title: "Proxy Authentication Required", detail: "the L7 proxy requires authentication" },
  { status: 408, title: "Request Timeout", detail: "the request did not arrive in time" },
  { status: 410, title: "Gone", detail: "the resource is gone" },
  { status: 413, title: "Content Too Large", detail: "the request is larger than the L7 proxy takes" },
  { status: 425, title: "Too Early", detail: "the L7 proxy does not take this request as early data" },
  { status: 429, title: "Too Many Requests", detail: "too many requests" },
  { status: 500, title: "Internal Server Error", detail: "the L7 proxy failed to handle the request" },
  { status: 501, title: "Not Implemented", detail: "the L7 proxy does not implement what the request asks" },
  { status: 502, title: "Bad Gateway", detail: "the backend answered with an invalid or cut response" },
  { status: 503, title: "Service Unavailable", detail: "no backend server is available" },
  { status: 504, title: "Gateway Timeout", detail: "the backend did not answer in time" },
];

/** Statuses after which HAProxy ends the connection (its own answers for them say `connection: close`). */
const CLOSING = new Set([400, 408]);

export const errorFilePath = (stateDir: string, status: number) => `${stateDir}/l7-error-${status}.http`;

/** The files the errorfile lines read: the same every time, written before each config is checked. */
export function proxyErrorFiles(stateDir: string): { path: string; content: string }[] {
  return PROXY_ERRORS.map((p) => ({ path: errorFilePath(stateDir, p.status), content: problemResponse(p, CLOSING.has(p.status)) }));
}

/** The defaults lines: one errorfile per status. */
export const errorFileLines = (stateDir: string): string[] => PROXY_ERRORS.map((p) => `errorfile ${p.status} ${errorFilePath(stateDir, p.status)}`);

/**
 * A control character other than HTAB in the request's headers, as PCRE
 * reads it: req.hdrs is the header block with its CRLFs, which the parser
 * lets into no value.
 */
const CONTROL_IN_HEADERS = String.raw`{ req.hdrs -m reg '[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]' }`;

/**
 * Frontend lines refusing a request with a control character in a header
 * value, before anything reads a header. The header block is rebuilt and
 * scanned once: the answer tests the variable the scan set (nothing sets
 * txn.refused before these lines and goes on). bench:l7 measured the check
 * with two scans at 37.4 against 33.7 µs of proxy CPU per request without
 * it; one scan should cost about half that (not measured on its own).
 */
export const invalidHeaderLines = (): string[] => [
  `http-request set-var(txn.refused) str(bad-request) if ${CONTROL_IN_HEADERS}`,
  `${problemReturn({ status: 400, title: "Bad Request", detail: "a request header value holds a control character" })} if { var(txn.refused) -m str bad-request }`,
];

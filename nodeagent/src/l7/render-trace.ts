// SPDX-License-Identifier: Apache-2.0
/**
 * W3C Trace Context in haproxy.cfg (issue 21): the proxy's span of each
 * request. HAProxy 2.6 exports no spans, so it only names them: the agent
 * mints each span from the request's record (traces.ts).
 *
 * A traceparent the client sent is used only when valid (one header,
 * version 00, 32 and 16 lower-case hex digits, neither all zeros): the
 * request then continues its trace, and its span id is logged as the
 * parent. Otherwise (absent or invalid, which the W3C spec treats alike) a
 * new trace starts, flags 01, and the tracestate that came with it is
 * dropped: it belonged to a trace that is not this one. Either way the
 * proxy's span gets a new id and the backend receives
 * `00-<trace id>-<the proxy's span id>-<flags>`; a valid tracestate passes
 * unchanged. Ids are HAProxy's `rand` draws (32 random bits each, from
 * its xoroshiro128** generator) as lower-case hex: four for a trace id,
 * two for a span id, every bit random. Not `uuid,regsub(-,,g)`: each
 * regex substitution cost about a microsecond a request (bench:l7's loopback
 * A/B: the trace lines went from ~2.8 µs a request to ~0.5), and a uuid
 * keeps 6 of its bits fixed.
 */

const VALID = "tp_valid";
const valid = `{ var(txn.trace_parent) -m found }`;

/** One draw of 32 random bits as 8 hex digits: `rand` is an integer, hex of it 16 digits, the first 8 always 0. */
const DRAW = "rand,hex,bytes(8)";

/** Lines that set `into` to `draws` x 8 random lower-case hex digits (txn.rnd holds the ones so far), if `cond`. */
function randomHex(into: string, draws: number, cond = ""): string[] {
  const when = cond ? ` if ${cond}` : "";
  const lines = [`http-request set-var(txn.rnd) ${DRAW}${when}`];
  for (let k = 2; k < draws; k++) lines.push(`http-request set-var(txn.rnd) ${DRAW},concat(,txn.rnd,)${when}`);
  lines.push(`http-request set-var(${into}) ${DRAW},concat(,txn.rnd,),lower${when}`);
  return lines;
}

/** Frontend lines, before anything refuses or routes, so every record (a refusal too) names its span. */
export const TRACE_CONTEXT_LINES: readonly string[] = [
  `acl ${VALID}_one req.fhdr_cnt(traceparent) eq 1`,
  `acl ${VALID}_form req.fhdr(traceparent) -m reg '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'`,
  `acl ${VALID}_zero req.fhdr(traceparent) -m beg 00-00000000000000000000000000000000-`,
  `acl ${VALID}_zero req.fhdr(traceparent) -m sub -- -0000000000000000-`,
  `http-request set-var(txn.trace_parent) req.fhdr(traceparent),field(3,-) if ${VALID}_one ${VALID}_form !${VALID}_zero`,
  `http-request set-var(txn.trace_id) req.fhdr(traceparent),field(2,-) if ${valid}`,
  `http-request set-var(txn.trace_flags) req.fhdr(traceparent),field(4,-) if ${valid}`,
  ...randomHex("txn.trace_id", 4, `!${valid}`),
  `http-request set-var(txn.trace_flags) str(01) if !${valid}`,
  `http-request del-header tracestate if !${valid}`,
  ...randomHex("txn.span_id", 2),
  "http-request set-header traceparent 00-%[var(txn.trace_id)]-%[var(txn.span_id)]-%[var(txn.trace_flags)]",
];

/** The record's trace fields (access-log.ts): hex the lines above checked or made, so written bare. */
export const TRACE_LOG_FIELDS: readonly string[] = [`"traceId":"%[var(txn.trace_id)]"`, `"spanId":"%[var(txn.span_id)]"`, `"parentSpanId":"%[var(txn.trace_parent)]"`];

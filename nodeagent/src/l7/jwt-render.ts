// SPDX-License-Identifier: Apache-2.0
/**
 * L7 authorization by JWT (issue 21), rendered for HAProxy 2.6: pure, like
 * render.ts, which calls it. An authorization entry with `jwt` matches a
 * request only when every one of these holds:
 *
 *  - the request carries `Authorization: Bearer <token>` (http_auth_bearer),
 *    one such line holding one token and nothing else;
 *  - the token's header names the alg and kid of a key of the entry's
 *    (tenant, trust domain) in the document's jwks, and jwt_verify checks the
 *    signature with that key's file (one file per key: HAProxy loads it when
 *    it parses the config, so the driver writes it first, named by content);
 *  - exp is in the future and nbf, when present, not (against `date`);
 *  - sub is a SPIFFE ID of the trust domain;
 *  - aud, a string or an array, holds one of the audiences;
 *  - each claim, a string or an array, holds one of its values.
 *
 * Every check is a condition that must hold, never one whose failure must
 * be noticed: a claim that is missing, of another type, or beyond what is
 * read makes the condition false, so the entry does not match. An allow
 * entry then admits nothing (governed: 403) and a deny entry refuses
 * nothing it would not refuse without the token. HAProxy 2.6's JSON path
 * reads no array whole, so an array is read element by element, the first
 * ARRAY_ITEMS_READ of them; a value past those does not count.
 *
 * Values the tenant wrote (audiences, claim values, kids) go in double
 * quotes through render.ts `quote`, after `--` so none is taken for a flag;
 * the document check (document.ts) refuses any that is not printable ASCII.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { L7Document, L7Frontend } from "./document.ts";

/**
 * A NumericDate (RFC 7519 2) as the 'int' query hands it back: digits. The
 * query returns a string claim unchanged, and the plain query writes a large
 * number as "1.79e+09", so only this one tells a number from a string. In
 * single quotes: no backslash for HAProxy's parser to eat.
 */
const NUMERIC_DATE = "'^-?[0-9]{1,15}$'";

/** An Authorization value holding one bearer token (RFC 6750 2.1: the scheme in any case, a b64token) and nothing else. */
const ONE_BEARER_TOKEN = "'^bearer +[A-Za-z0-9._~+/-]+=*$'";

/** Elements of an aud or claim array the proxy reads: a match past them does not count. */
export const ARRAY_ITEMS_READ = 16;

type Entry = L7Frontend["authorization"]["entries"][number];
type Jwt = NonNullable<Entry["jwt"]>;

export interface JwtKeyFile {
  path: string;
  pem: string;
}

/** Each key's file: named by its content and alg, so a changed key never changes a file a running worker read. */
export const jwtKeyFileName = (alg: string, pem: string): string => `l7-jwk-${createHash("sha256").update(`${alg}\n${pem}`).digest("hex").slice(0, 24)}.pem`;
export const JWT_KEY_FILE = /^l7-jwk-[0-9a-f]{24}\.pem$/;

/** Every key file the document's config reads, in `dir`. */
export function jwtKeyFiles(doc: L7Document, dir: string): JwtKeyFile[] {
  const files = new Map<string, string>();
  for (const td of doc.jwks ?? []) for (const k of td.keys) files.set(join(dir, jwtKeyFileName(k.alg, k.publicKeyPem)), k.publicKeyPem);
  return [...files].map(([path, pem]) => ({ path, pem }));
}

/** What render.ts needs: the lines before the authorization, and each entry's condition. */
export interface JwtRendering {
  /** Frontend lines run once per request before any authorization (empty when no entry names a JWT). */
  prelude: string[];
  /** The lines declaring entry `name`'s check, and the `if` term that holds when it does. */
  entry(name: string, tenant: string, jwt: Jwt): { lines: string[]; term: string };
}

/** A JSON path member query on the bearer token's payload, with its array elements. */
const payloadReads = (claim: string): string[] => [
  `var(txn.jwt),jwt_payload_query('$.${claim}')`,
  ...Array.from({ length: ARRAY_ITEMS_READ }, (_, i) => `var(txn.jwt),jwt_payload_query('$.${claim}[${i}]')`),
];

export function jwtRendering(doc: L7Document, dir: string, quote: (text: string) => string): JwtRendering {
  const named = doc.frontends.some((f) => f.authorization.entries.some((e) => e.jwt !== undefined));
  if (!named) return { prelude: [], entry: () => ({ lines: [], term: "{ always_false }" }) };
  const prelude = [
    // Only the request's one token: HAProxy reads the first of several Authorization lines or tokens, a backend may read
    // another, and must never take a token the proxy did not verify for one it did. A request with more carries none.
    "acl jwt_one_line req.fhdr_cnt(authorization) eq 1",
    `acl jwt_one_token req.fhdr(authorization) -m reg -i ${ONE_BEARER_TOKEN}`,
    "http-request set-var(txn.jwt) http_auth_bearer if jwt_one_line jwt_one_token",
    "http-request set-var(txn.jwt_alg) var(txn.jwt),jwt_header_query('$.alg')",
    "http-request set-var(txn.jwt_kid) var(txn.jwt),jwt_header_query('$.kid')",
    "http-request set-var(txn.jwt_sub) var(txn.jwt),jwt_payload_query('$.sub')",
    "http-request set-var(txn.jwt_now) date",
    "http-request set-var(txn.jwt_exp_left) var(txn.jwt),jwt_payload_query('$.exp','int'),sub(txn.jwt_now)",
    "http-request set-var(txn.jwt_nbf_ahead) var(txn.jwt),jwt_payload_query('$.nbf','int'),sub(txn.jwt_now)",
    // sub reads a string claim ("soon") as 0: a time must be a number.
    `acl jwt_exp_numeric var(txn.jwt),jwt_payload_query('$.exp','int') -m reg ${NUMERIC_DATE}`,
    `acl jwt_nbf_numeric var(txn.jwt),jwt_payload_query('$.nbf','int') -m reg ${NUMERIC_DATE}`,
    "acl jwt_live var(txn.jwt_exp_left) -m int gt 0",
    "acl jwt_nbf_present var(txn.jwt),jwt_payload_query('$.nbf') -m found",
    "acl jwt_nbf_passed var(txn.jwt_nbf_ahead) -m int le 0",
    // Without nbf, or with one passed (a present nbf that is no number passes neither).
    "http-request set-var(txn.jwt_timely) bool(true) if jwt_exp_numeric jwt_live !jwt_nbf_present",
    "http-request set-var(txn.jwt_timely) bool(true) if jwt_exp_numeric jwt_live jwt_nbf_numeric jwt_nbf_passed",
  ];
  /** Per (tenant, trust domain): txn.jwt_td<i> holds when a key of it signed the token, it is timely, and sub is in the trust domain. */
  const domains = new Map<string, number>();
  (doc.jwks ?? []).forEach((td, i) => {
    domains.set(`${td.tenant}\n${td.trustDomain}`, i);
    td.keys.forEach((k, j) => {
      const key = `jwt_td${i}_k${j}`;
      prelude.push(
        `acl ${key}_kid var(txn.jwt_kid) -m str -- ${quote(k.kid)}`,
        `acl ${key}_alg var(txn.jwt_alg) -m str -- ${k.alg}`,
        `acl ${key}_sig var(txn.jwt),jwt_verify(${k.alg},${quote(join(dir, jwtKeyFileName(k.alg, k.publicKeyPem)))}) -m int 1`,
        `http-request set-var(txn.jwt_signed${i}) bool(true) if ${key}_kid ${key}_alg ${key}_sig`,
      );
    });
    prelude.push(
      `acl jwt_td${i}_sub var(txn.jwt_sub) -m beg -- ${quote(`spiffe://${td.trustDomain}/`)}`,
      `http-request set-var(txn.jwt_td${i}) bool(true) if { var(txn.jwt_signed${i}) -m bool } { var(txn.jwt_timely) -m bool } jwt_td${i}_sub`,
    );
  });
  return {
    prelude,
    entry(name, tenant, jwt) {
      const i = domains.get(`${tenant}\n${jwt.trustDomain}`);
      // No keys listed for it: no token verifies, the entry matches nothing.
      if (i === undefined) return { lines: [], term: "{ always_false }" };
      const lines: string[] = [];
      const anyOf = (acl: string, claim: string, values: readonly string[]) => {
        const patterns = values.map(quote).join(" ");
        for (const read of payloadReads(claim)) lines.push(`acl ${acl} ${read} -m str -- ${patterns}`);
        return acl;
      };
      const terms = [`{ var(txn.jwt_td${i}) -m bool }`, anyOf(`${name}_jwt_aud`, "aud", jwt.audiences)];
      jwt.claims.forEach((c, k) => terms.push(anyOf(`${name}_jwt_c${k}`, c.name, c.values)));
      lines.push(`http-request set-var(txn.${name}_jwt) bool(true) if ${terms.join(" ")}`);
      return { lines, term: `{ var(txn.${name}_jwt) -m bool }` };
    },
  };
}

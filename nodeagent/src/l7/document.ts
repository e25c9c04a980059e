// SPDX-License-Identifier: Apache-2.0
/**
 * The node's L7 document as the agent reads it (GET /v1/nodes/{node}/l7,
 * issue 21): the API's `L7Document` written again here because the agent
 * is a client of the API's document, not of its code (import rules);
 * test/agent/l7-document.test.ts holds the two (and the OpenAPI component)
 * equal. Descriptions live on the API's side.
 */
import { FormatRegistry, Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { FORMATS } from "@weft/formats";

for (const [name, { pattern }] of Object.entries(FORMATS)) if (!FormatRegistry.Has(name)) FormatRegistry.Set(name, (v) => pattern.test(v));

const Name = Type.String({ format: "dns-label", minLength: 1, maxLength: 63 });
const Ipv4 = Type.String({ format: "ipv4", maxLength: 15 });
const PortNumber = Type.Integer({ minimum: 1, maximum: 65535 });
const SpiffeIdText = Type.String({ pattern: "^spiffe://", maxLength: 2048 });
const HttpMethod = Type.Union(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"].map((m) => Type.Literal(m)));
const HttpPath = Type.String({ pattern: "^/[\\x21-\\x7e]*$", maxLength: 1024 });
const TrustDomain = Type.String({ pattern: "^[a-z0-9._-]+$", minLength: 1, maxLength: 255 });
const ClaimName = Type.String({ pattern: "^[A-Za-z0-9_.:-]+$", minLength: 1, maxLength: 128 });
const HeaderName = Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", minLength: 1, maxLength: 256 });
const HeaderValue = Type.String({ pattern: "^[\\x20-\\x7e]+$", maxLength: 4096 });
const HeaderPair = Type.Object({ name: HeaderName, value: HeaderValue }, { additionalProperties: false });
/** Names HAProxy takes as section and server names: what the compiler mints. */
const ProxyName = Type.String({ pattern: "^[a-z0-9][a-z0-9_-]*$", maxLength: 128 });

export const RetryCondition = Type.Union(["5xx", "gateway-error", "connect-failure", "reset", "timeout"].map((c) => Type.Literal(c)));
export type RetryCondition = Static<typeof RetryCondition>;

const HttpRouteMatch = Type.Object(
  {
    path: Type.Optional(
      Type.Object({ type: Type.Optional(Type.Union([Type.Literal("Exact"), Type.Literal("PathPrefix")])), value: HttpPath }, { additionalProperties: false }),
    ),
    headers: Type.Optional(
      Type.Array(Type.Object({ type: Type.Optional(Type.Literal("Exact")), name: HeaderName, value: HeaderValue }, { additionalProperties: false }), { maxItems: 16 }),
    ),
    method: Type.Optional(HttpMethod),
  },
  { additionalProperties: false },
);
export type L7Match = Static<typeof HttpRouteMatch>;

const HeaderModifier = Type.Object(
  {
    set: Type.Optional(Type.Array(HeaderPair, { maxItems: 16 })),
    add: Type.Optional(Type.Array(HeaderPair, { maxItems: 16 })),
    remove: Type.Optional(Type.Array(HeaderName, { maxItems: 16 })),
  },
  { additionalProperties: false },
);
export type HeaderModifier = Static<typeof HeaderModifier>;

const L7Server = Type.Object(
  { name: ProxyName, address: Ipv4, port: PortNumber, weight: Type.Integer({ minimum: 0, maximum: 256 }), transport: Type.Optional(Type.Literal(true)) },
  { additionalProperties: false },
);

const L7Backend = Type.Object(
  {
    name: ProxyName,
    servers: Type.Array(L7Server, { maxItems: 1024 }),
    requestTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    backendRequestTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    retry: Type.Optional(
      Type.Object({ attempts: Type.Integer({ minimum: 1, maximum: 5 }), on: Type.Array(RetryCondition, { minItems: 1 }), nonIdempotent: Type.Boolean() }, { additionalProperties: false }),
    ),
    requestHeaders: Type.Optional(HeaderModifier),
    responseHeaders: Type.Optional(HeaderModifier),
  },
  { additionalProperties: false },
);
export type L7Backend = Static<typeof L7Backend>;

const L7Rule = Type.Object(
  {
    route: Name,
    rule: Type.Integer({ minimum: 0 }),
    matches: Type.Array(HttpRouteMatch),
    backends: Type.Array(Type.Object({ backend: ProxyName, weight: Type.Integer({ minimum: 0, maximum: 1000 }) }, { additionalProperties: false }), { minItems: 1 }),
  },
  { additionalProperties: false },
);

const L7Authorization = Type.Object(
  {
    governed: Type.Boolean(),
    entries: Type.Array(
      Type.Object(
        {
          action: Type.Union([Type.Literal("allow"), Type.Literal("deny")]),
          sources: Type.Optional(Type.Array(SpiffeIdText)),
          methods: Type.Optional(Type.Array(HttpMethod)),
          pathPrefixes: Type.Optional(Type.Array(HttpPath)),
          jwt: Type.Optional(
            Type.Object(
              {
                trustDomain: TrustDomain,
                audiences: Type.Array(Type.String()),
                claims: Type.Array(Type.Object({ name: ClaimName, values: Type.Array(Type.String()) }, { additionalProperties: false })),
              },
              { additionalProperties: false },
            ),
          ),
          policy: Name,
          rule: Type.Integer({ minimum: 0 }),
          groups: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }))),
        },
        { additionalProperties: false },
      ),
    ),
    groups: Type.Optional(Type.Array(Type.Object({ subjects: Type.Array(SpiffeIdText) }, { additionalProperties: false }))),
  },
  { additionalProperties: false },
);
export type L7Authorization = Static<typeof L7Authorization>;

const L7Traffic = Type.Object(
  {
    policy: Name,
    maxConnections: Type.Optional(Type.Integer({ minimum: 1 })),
    maxPendingRequests: Type.Optional(Type.Integer({ minimum: 0 })),
    outlier: Type.Optional(
      Type.Object(
        {
          consecutive5xx: Type.Integer({ minimum: 1 }),
          intervalMs: Type.Integer({ minimum: 1 }),
          baseEjectionMs: Type.Integer({ minimum: 1 }),
          maxEjectionPercent: Type.Integer({ minimum: 0, maximum: 100 }),
        },
        { additionalProperties: false },
      ),
    ),
    rateLimit: Type.Optional(Type.Object({ requestsPerSecond: Type.Integer({ minimum: 1 }), burst: Type.Integer({ minimum: 1 }) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type L7Traffic = Static<typeof L7Traffic>;
export type L7Outlier = NonNullable<L7Traffic["outlier"]>;

const L7Jwks = Type.Object(
  {
    tenant: Name,
    trustDomain: TrustDomain,
    keys: Type.Array(
      Type.Object(
        {
          kid: Type.String({ minLength: 1, maxLength: 256 }),
          alg: Type.Union([Type.Literal("ES256"), Type.Literal("ES384"), Type.Literal("RS256")]),
          publicKeyPem: Type.String({ maxLength: 8192 }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const L7Document = Type.Object(
  {
    proxyAddress: Ipv4,
    frontends: Type.Array(
      Type.Object(
        {
          name: ProxyName,
          tenant: Name,
          service: Name,
          vip: Ipv4,
          port: PortNumber,
          rules: Type.Array(L7Rule),
          defaultBackend: ProxyName,
          authorization: L7Authorization,
          traffic: Type.Optional(L7Traffic),
          egressDenied: Type.Optional(Type.Array(SpiffeIdText)),
        },
        { additionalProperties: false },
      ),
    ),
    backends: Type.Array(L7Backend),
    callers: Type.Array(Type.Object({ address: Ipv4, tenant: Name, spiffeId: SpiffeIdText }, { additionalProperties: false })),
    jwks: Type.Optional(Type.Array(L7Jwks)),
  },
  { additionalProperties: false, title: "L7Document" },
);
export type L7Document = Static<typeof L7Document>;
export type L7Frontend = L7Document["frontends"][number];

/**
 * A SPIFFE ID as the spec shapes it (trust domain, then path segments of
 * letters, digits, '.', '-', '_'): the only shape the proxy's callers map
 * and ACLs take, so nothing the API passes through can add a map line or
 * a config token.
 */
const SPIFFE_ID = /^spiffe:\/\/[a-z0-9._-]{1,255}(\/[A-Za-z0-9._-]+)*$/;
const SPIFFE_ID_MESSAGE = "not a SPIFFE ID (spiffe://trust-domain/path of letters, digits, '.', '-', '_')";

/** What the proxy's config takes in quotes (audiences, claim values, kids): printable ASCII, at least one character. */
const JWT_TEXT = /^[\x20-\x7e]{1,256}$/;
const JWT_TEXT_MESSAGE = "not 1 to 256 printable ASCII characters";

/**
 * The document `body` is, or why not: the schema's first fault, then what
 * the schema cannot say and haproxy.cfg needs (names unique, every backend
 * a rule or frontend names exists, no caller address twice).
 */
export function checkL7Document(body: unknown): L7Document | string {
  if (!Value.Check(L7Document, body)) {
    const e = Value.Errors(L7Document, body).First();
    return e ? `${e.path || "/"}: ${e.message}` : "not an L7 document";
  }
  const backends = new Set<string>();
  for (const [i, b] of body.backends.entries()) {
    if (backends.has(b.name)) return `/backends/${i}/name: backend ${b.name} is named twice`;
    backends.add(b.name);
    const servers = new Set<string>();
    for (const [j, s] of b.servers.entries()) {
      if (servers.has(s.name)) return `/backends/${i}/servers/${j}/name: server ${s.name} is named twice in backend ${b.name}`;
      servers.add(s.name);
    }
  }
  const frontends = new Set<string>();
  const listeners = new Set<string>();
  for (const [i, f] of body.frontends.entries()) {
    if (frontends.has(f.name)) return `/frontends/${i}/name: frontend ${f.name} is named twice`;
    frontends.add(f.name);
    const at = `${f.vip}:${f.port}`;
    if (listeners.has(at)) return `/frontends/${i}: ${at} is taken by two frontends`;
    listeners.add(at);
    if (!backends.has(f.defaultBackend)) return `/frontends/${i}/defaultBackend: no backend ${f.defaultBackend}`;
    for (const [j, r] of f.rules.entries()) {
      for (const [k, ref] of r.backends.entries()) if (!backends.has(ref.backend)) return `/frontends/${i}/rules/${j}/backends/${k}/backend: no backend ${ref.backend}`;
    }
  }
  // A trafficPolicy applies to every backend of its frontend: a backend two frontends share could take only one of theirs.
  const owner = new Map<string, string>();
  for (const [i, f] of body.frontends.entries()) {
    for (const b of new Set([f.defaultBackend, ...f.rules.flatMap((r) => r.backends.map((ref) => ref.backend))])) {
      const other = owner.get(b);
      if (other !== undefined && other !== f.name) return `/frontends/${i}: backend ${b} is named by frontends ${other} and ${f.name} (a backend belongs to one frontend)`;
      owner.set(b, f.name);
    }
  }
  const callers = new Set<string>();
  for (const [i, c] of body.callers.entries()) {
    if (callers.has(c.address)) return `/callers/${i}/address: ${c.address} is listed twice`;
    if (!SPIFFE_ID.test(c.spiffeId)) return `/callers/${i}/spiffeId: ${SPIFFE_ID_MESSAGE}`;
    callers.add(c.address);
  }
  for (const [i, f] of body.frontends.entries()) {
    for (const [k, e] of f.authorization.entries.entries()) {
      const at = `/frontends/${i}/authorization/entries/${k}`;
      for (const [m, s] of (e.sources ?? []).entries()) if (!SPIFFE_ID.test(s)) return `${at}/sources/${m}: ${SPIFFE_ID_MESSAGE}`;
      const jwt = e.jwt;
      if (jwt === undefined) continue;
      if (jwt.audiences.length === 0) return `${at}/jwt/audiences: no audience: no token could match`;
      for (const [m, a] of jwt.audiences.entries()) if (!JWT_TEXT.test(a)) return `${at}/jwt/audiences/${m}: ${JWT_TEXT_MESSAGE}`;
      for (const [m, c] of jwt.claims.entries()) {
        // The proxy reads a claim by JSON path: a dot would read a nested member.
        if (c.name.includes(".")) return `${at}/jwt/claims/${m}/name: a top-level claim's name has no dot`;
        if (c.values.length === 0) return `${at}/jwt/claims/${m}/values: no value: no token could match`;
        for (const [n, v] of c.values.entries()) if (!JWT_TEXT.test(v)) return `${at}/jwt/claims/${m}/values/${n}: ${JWT_TEXT_MESSAGE}`;
      }
    }
  }
  for (const [i, td] of (body.jwks ?? []).entries()) {
    for (const [j, k] of td.keys.entries()) if (!JWT_TEXT.test(k.kid)) return `/jwks/${i}/keys/${j}/kid: ${JWT_TEXT_MESSAGE}`;
  }
  return body;
}

/** The document of a node without L7 services (and while the API has no L7 route). */
export const emptyL7Document = (proxyAddress = "0.0.0.0"): L7Document => ({ proxyAddress, frontends: [], backends: [], callers: [] });

/**
 * What each write of the mesh takes, as TypeBox schemas: the domain's input
 * shapes. The routes take them as request bodies (so the OpenAPI document
 * shows them) and build their representations from the same pieces; the
 * types come from the schemas. Rules a schema cannot state are checked where
 * the kind is written (mesh/<kind>.ts).
 */
import { Type, type Static } from "@sinclair/typebox";

// The fields the specs are made of.

export const Name = Type.String({ format: "dns-label", minLength: 1, maxLength: 63, description: "A DNS label" });

// A Record's key schema becomes a pattern and loses its maxLength: propertyNames keeps the key bound.
export const Labels = Type.Record(Type.String({ maxLength: 63 }), Type.String({ maxLength: 253 }), {
  maxProperties: 64,
  propertyNames: { maxLength: 63 },
});

export const Ipv4 = Type.String({ format: "ipv4", maxLength: 15, description: "IPv4 address, dotted quad" });
export const Ipv4Prefix = Type.String({ format: "ipv4-prefix", maxLength: 18, description: "IPv4 prefix, e.g. 10.0.0.0/8" });

// Tenants (tenants.ts)

export const TrustDomain = Type.String({
  pattern: "^[a-z0-9._-]+$",
  minLength: 1,
  maxLength: 255,
  description: "SPIFFE trust domain: lowercase letters, digits, '.', '-', '_'; default <tenant>.<suffix>",
});

export const DefaultAction = Type.Union([Type.Literal("allow"), Type.Literal("deny")], {
  description: "Verdict for a workload no policy selects in a direction (default allow); other tenants are always denied",
});

export const Transport = Type.Union([Type.Literal("plaintext"), Type.Literal("mtls")], {
  description:
    "mtls: TCP this rule allows between workloads on different nodes is carried by the nodes' transports over mutual TLS with the workloads' SVIDs, and the receiving node drops plaintext copies from the fabric (reason mtls-required); same-node pairs are untouched. Refused on deny rules, udp (or any-protocol with a port) and CIDR peers",
});
export type Transport = Static<typeof Transport>;

export const DefaultTransport = Type.Union([Type.Literal("plaintext"), Type.Literal("mtls")], {
  description:
    "Transport of every policy rule that names none (default plaintext); with mtls, rules that cannot be mtls (deny, udp, CIDR peers) stay plaintext",
});

export const TenantSpec = Type.Object(
  {
    displayName: Type.Optional(Type.String({ maxLength: 200 })),
    labels: Type.Optional(Labels),
    trustDomain: Type.Optional(TrustDomain),
    defaultAction: Type.Optional(DefaultAction),
    defaultTransport: Type.Optional(DefaultTransport),
  },
  { additionalProperties: false },
);
export type TenantSpec = Static<typeof TenantSpec>;

// Identities (identities.ts)

export const IdentitySpec = Type.Object(
  {
    path: Type.String({
      minLength: 1,
      maxLength: 2048,
      description: "SPIFFE ID path, e.g. /ns/prod/sa/web: segments of [A-Za-z0-9._-], no '.', '..' or empty segment, no trailing '/'",
    }),
    selectors: Type.Optional(Labels),
    nodeSelector: Type.Optional({
      ...Labels,
      description:
        "Node labels a node must carry (all of them, same values) to run this identity: its workloads may be placed only on such nodes, and only such nodes obtain its SVIDs. Empty or absent: any node",
    }),
    allowNodeRegistration: Type.Optional(
      Type.Boolean({
        description:
          "Whether a node's own credential may declare, replace and delete workloads of this identity (on itself, when nodeSelector matches it). Default false: only the tenant declares them",
      }),
    ),
    x509SvidTtlSeconds: Type.Optional(
      Type.Integer({ minimum: 60, maximum: 86_400, description: "Default 3600; never past the CA's own expiry" }),
    ),
    jwtSvidTtlSeconds: Type.Optional(Type.Integer({ minimum: 30, maximum: 86_400, description: "Default 300" })),
  },
  { additionalProperties: false },
);
export type IdentitySpec = Static<typeof IdentitySpec>;

// Nodes (nodes.ts)

export const Zone = Type.String({ minLength: 1, maxLength: 63, description: "Failure domain; services with preferSameZone prefer backends of the node's zone" });

export const Registration = Type.Object(
  {
    joinToken: Type.String({ minLength: 1, maxLength: 256, description: "From POST /v1/join-tokens; spent by this call" }),
    name: { ...Name, description: "A DNS label; must equal the join token's name when it fixes one (403 otherwise)" },
    zone: { ...Zone, description: `${Zone.description}; must equal the join token's zone when it fixes one (403 otherwise)` },
    labels: Type.Optional({
      ...Labels,
      description:
        "The node's labels come from the join token: leave this out, or send exactly the token's labels (anything else is 403 and does not spend the token)",
    }),
  },
  { additionalProperties: false },
);
export type Registration = Static<typeof Registration>;

/** A global revision: a bigint column read in number mode, so never past 2^53 (a larger one would not round-trip). */
export const Revision = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

const Reason = Type.String({ maxLength: 512 });

export const UnresolvedWorkload = Type.Object(
  {
    tenant: Type.String({ maxLength: 63, description: "The workload's tenant; empty when the agent could not name it" }),
    workload: Type.String({ maxLength: 63, description: "The workload's name; empty when the agent could not name it" }),
    address: Type.String({ maxLength: 15 }),
    reason: Reason,
  },
  { additionalProperties: false, title: "UnresolvedWorkload" },
);

export const HealthState = Type.Union([Type.Literal("healthy"), Type.Literal("unhealthy")]);

export const ReportedHealth = Type.Object(
  {
    tenant: Name,
    workload: Name,
    state: HealthState,
    since: Type.String({ format: "date-time", maxLength: 64, description: "When the agent saw the transition" }),
  },
  { additionalProperties: false, title: "ReportedHealth" },
);
export type ReportedHealth = Static<typeof ReportedHealth>;

/** "IPV4:PORT" of a node's transport, where peers' transports open their streams. */
export const TransportEndpoint = Type.String({
  pattern: "^\\d{1,3}(\\.\\d{1,3}){3}:\\d{1,5}$",
  maxLength: 21,
  description: "IPV4:PORT where peer nodes' transports reach this node's (port 15008 by default); a unicast address, not loopback",
});

export const NodeTransportState = Type.Union([Type.Literal("running"), Type.Literal("down"), Type.Literal("off")], {
  description: "running: carrying; down: enabled but not serving (traffic it would carry is dropped, never sent around it); off: no transport on this node",
});

export const ReportedTransport = Type.Object(
  {
    endpoint: Type.Union([TransportEndpoint, Type.Null()], { description: "null: the node takes no transport streams" }),
    state: NodeTransportState,
  },
  { additionalProperties: false, title: "ReportedTransport" },
);
export type ReportedTransport = Static<typeof ReportedTransport>;

const SpiffeIdText = Type.String({ pattern: "^spiffe://", maxLength: 2048 });

/** What an agent says of its node's L7 proxy (issue 21). */
export const ReportedL7 = Type.Object(
  {
    state: Type.Union([Type.Literal("off"), Type.Literal("starting"), Type.Literal("running"), Type.Literal("down")], {
      description:
        "off: the agent runs without a proxy (--l7 off, or no haproxy installed: connections to L7 services drop as proxy-down); starting: configured, not yet answering; running: serving the applied document; down: crashed or failed to apply, being restarted (connections to L7 services drop as proxy-down, never bypass it)",
    }),
    appliedEtag: Type.Optional(Type.String({ maxLength: 128, description: "The ETag of the L7 document (GET /v1/nodes/{node}/l7) the running proxy serves" })),
    detail: Type.Optional(Type.String({ maxLength: 1024, description: "Why it is off or down" })),
  },
  { additionalProperties: false, title: "ReportedL7" },
);
export type ReportedL7 = Static<typeof ReportedL7>;

/**
 * What a node's transport needs from the API (GET /v1/nodes/{node}/transport):
 * the agent adds its workloads' SVIDs and hands it to the transport as its
 * configure input (nodeagent/src/transport/control-schema.ts). Public
 * material only: certificates and names, never a key.
 */
export const TransportDocument = Type.Object(
  {
    bundles: Type.Array(
      Type.Object(
        { trustDomain: Type.String(), caPem: Type.String({ description: "The trust domain's CA certificates (prepared, active, retiring), PEM" }) },
        { additionalProperties: false },
      ),
      { description: "The X.509 trust bundle of every tenant with a workload on this node that takes part in an mtls rule" },
    ),
    remotes: Type.Array(
      Type.Object({ address: Ipv4, spiffeId: SpiffeIdText, node: TransportEndpoint }, { additionalProperties: false }),
      { description: "Every workload address on another node (with a transport endpoint) that a workload of this node is steered to, or that may open mtls connections to one (the receiving transport checks a stream's source address against it)" },
    ),
    allow: Type.Array(
      Type.Object(
        {
          source: SpiffeIdText,
          destination: SpiffeIdText,
          ports: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { description: "Absent: any port" })),
        },
        { additionalProperties: false },
      ),
      { description: "Which peer identity may open streams to which local identity, from every mtls rule that lets a peer reach a workload of this node" },
    ),
    proxy: Type.Optional(
      Type.Object(
        {
          address: { ...Ipv4, description: "This node's L7 proxy address: where the transport delivers streams other nodes' proxies open from" },
          targets: Type.Array(TransportEndpoint, {
            description:
              "Backends on other nodes this node's proxy reaches through the transport (its L7 document's transport servers), each also in remotes; the transport takes the proxy's connections for one on a unix socket of its own",
          }),
          allow: Type.Array(
            Type.Object(
              { destination: SpiffeIdText, ports: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { description: "Absent: any port" })) },
              { additionalProperties: false },
            ),
            { description: "Local workloads any node's L7 proxy of their trust domain (spiffe://<td>/weft/node/<node>/proxy) may open streams to, from the proxy's mtls allow entries" },
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, title: "TransportDocument" },
);
export type TransportDocument = Static<typeof TransportDocument>;

export const NodeStatusReport = Type.Object(
  {
    appliedRevision: Revision,
    hash: Type.String({ minLength: 1, maxLength: 128, description: "Content hash of the datapath now in the node's kernel maps" }),
    counters: Type.Record(Type.String({ maxLength: 128 }), Type.Integer({ minimum: 0 }), {
      maxProperties: 256,
      propertyNames: { maxLength: 128 },
      description: "Monotonic counters, e.g. verdicts and apply errors",
    }),
    errors: Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 64, description: "Current errors; empty when healthy" }),
    unresolved: Type.Optional(
      Type.Array(UnresolvedWorkload, {
        maxItems: 256,
        description: "Local workloads the agent could not attach (no veth found in its network namespace, not a veth, attach failed); absent: none. The node is not converged while any is listed",
      }),
    ),
    health: Type.Optional(
      Type.Array(ReportedHealth, {
        maxItems: 1024,
        description:
          "The state of every probed workload of this node that has passed a threshold (the full set, not a delta; absent: none). A workload's transition withdraws or restores it as a backend on every node; entries naming no probed workload of this node are ignored",
      }),
    ),
    transport: Type.Optional({
      ...ReportedTransport,
      description: "The node's transport (issue 18): its endpoint goes into other nodes' transport documents. Absent: unchanged (an agent without a transport)",
    }),
    l7: Type.Optional({ ...ReportedL7, description: "The node's L7 proxy (issue 21). Absent: unchanged" }),
  },
  { additionalProperties: false },
);
export type NodeStatusReport = Static<typeof NodeStatusReport>;

// Workloads (workloads.ts)

/** Defaults of a health check's optional fields (Envoy's and Kubernetes' probes are alike). */
export const HEALTH_CHECK_DEFAULTS = { intervalSeconds: 5, timeoutSeconds: 1, healthyThreshold: 2, unhealthyThreshold: 3 } as const;
export const HTTP_CHECK_DEFAULTS = { path: "/", expectStatus: 200 } as const;

const healthCheckFields = {
  protocol: Type.Union([Type.Literal("tcp"), Type.Literal("http")], { description: "tcp: a connect within the timeout; http: GET path answered with expectStatus" }),
  port: Type.Integer({ minimum: 1, maximum: 65535, description: "Probed on the workload's first address" }),
  path: Type.String({ pattern: "^/[\\x21-\\x7e]*$", maxLength: 1024, description: `http only; default ${HTTP_CHECK_DEFAULTS.path}` }),
  expectStatus: Type.Integer({ minimum: 100, maximum: 599, description: `http only; default ${HTTP_CHECK_DEFAULTS.expectStatus}` }),
  intervalSeconds: Type.Integer({ minimum: 1, maximum: 300, description: `default ${HEALTH_CHECK_DEFAULTS.intervalSeconds}` }),
  timeoutSeconds: Type.Integer({ minimum: 1, maximum: 60, description: `at most intervalSeconds; default ${HEALTH_CHECK_DEFAULTS.timeoutSeconds}` }),
  healthyThreshold: Type.Integer({ minimum: 1, maximum: 10, description: `successes in a row that make it healthy; default ${HEALTH_CHECK_DEFAULTS.healthyThreshold}` }),
  unhealthyThreshold: Type.Integer({ minimum: 1, maximum: 10, description: `failures in a row that make it unhealthy; default ${HEALTH_CHECK_DEFAULTS.unhealthyThreshold}` }),
};

/**
 * What the agent of the workload's node probes, from the node's network
 * namespace; an unhealthy workload is withdrawn as a backend everywhere
 * (while another serves). A policy governing the workload's ingress must
 * allow the probe, which comes from the node's address.
 */
export const HealthCheckSpec = Type.Object(
  {
    protocol: healthCheckFields.protocol,
    port: healthCheckFields.port,
    path: Type.Optional(healthCheckFields.path),
    expectStatus: Type.Optional(healthCheckFields.expectStatus),
    intervalSeconds: Type.Optional(healthCheckFields.intervalSeconds),
    timeoutSeconds: Type.Optional(healthCheckFields.timeoutSeconds),
    healthyThreshold: Type.Optional(healthCheckFields.healthyThreshold),
    unhealthyThreshold: Type.Optional(healthCheckFields.unhealthyThreshold),
  },
  { additionalProperties: false, title: "HealthCheckSpec" },
);
export type HealthCheckSpec = Static<typeof HealthCheckSpec>;

/** A health check as stored and shown: every default filled (path and expectStatus for http only). */
export const HealthCheck = Type.Object(
  {
    protocol: healthCheckFields.protocol,
    port: healthCheckFields.port,
    path: Type.Optional(healthCheckFields.path),
    expectStatus: Type.Optional(healthCheckFields.expectStatus),
    intervalSeconds: healthCheckFields.intervalSeconds,
    timeoutSeconds: healthCheckFields.timeoutSeconds,
    healthyThreshold: healthCheckFields.healthyThreshold,
    unhealthyThreshold: healthCheckFields.unhealthyThreshold,
  },
  { title: "HealthCheck" },
);
export type HealthCheck = Static<typeof HealthCheck>;

export const WorkloadSpec = Type.Object(
  {
    identity: { ...Name, description: "An identity of the same tenant" },
    node: { ...Name, description: "A registered node" },
    addresses: Type.Array(Ipv4, {
      minItems: 1,
      maxItems: 16,
      uniqueItems: true,
      description: "Unique across the platform; the first is the one services send to",
    }),
    interface: Type.Optional(
      Type.String({ pattern: "^[A-Za-z0-9_.@-]{1,15}$", description: "Host-side veth the agent guards (Linux name, at most 15 bytes)" }),
    ),
    healthCheck: Type.Optional(HealthCheckSpec),
  },
  { additionalProperties: false },
);
export type WorkloadSpec = Static<typeof WorkloadSpec>;

// Services (services.ts)

export const Protocol = Type.Union([Type.Literal("tcp"), Type.Literal("udp")]);
const PortNumber = Type.Integer({ minimum: 1, maximum: 65535 });

export const Selector = Type.Object(
  {
    identity: Type.Optional({ ...Name, description: "An identity of the same tenant" }),
    labels: Type.Optional(Labels),
  },
  { additionalProperties: false, description: "Identities of the same tenant; {} selects all of them" },
);

export const ServicePort = Type.Object(
  { port: PortNumber, protocol: Protocol, targetPort: PortNumber },
  { additionalProperties: false },
);

export const ExplicitBackend = Type.Object(
  {
    workload: Type.Optional({ ...Name, description: "A workload of the same tenant (its first address)" }),
    address: Type.Optional(Ipv4),
    port: Type.Optional({ ...PortNumber, description: "Default: the service port's targetPort" }),
    weight: Type.Integer({ minimum: 0, maximum: 1_000_000, description: "0 keeps the backend without traffic" }),
    zone: Type.Optional(Type.String({ minLength: 1, maxLength: 63, description: "Default: the zone of the workload's node" })),
  },
  { additionalProperties: false, description: "Exactly one of workload or address" },
);

export const Backends = Type.Union([
  Type.Object({ selector: Selector }, { additionalProperties: false }),
  Type.Object({ explicit: Type.Array(ExplicitBackend, { maxItems: 1024 }) }, { additionalProperties: false }),
]);

export const LoadBalancing = Type.Union([Type.Literal("maglev"), Type.Literal("random")]);

export const Topology = Type.Object(
  { preferSameZone: Type.Boolean({ description: "Send to backends in the client node's zone when there are any" }) },
  { additionalProperties: false },
);

export const ServiceSpec = Type.Object(
  {
    vip: Type.Optional({ ...Ipv4, description: "Unique across the platform; allocated from WEFT_SERVICE_CIDR when absent" }),
    ports: Type.Array(ServicePort, { minItems: 1, maxItems: 16 }),
    backends: Backends,
    loadBalancing: Type.Optional({ ...LoadBalancing, description: "Default random" }),
    topology: Type.Optional(Topology),
  },
  { additionalProperties: false },
);
export type ServiceSpec = Static<typeof ServiceSpec>;

// Policies (policies.ts)

export const Peer = Type.Union([Selector, Type.Object({ cidr: Ipv4Prefix }, { additionalProperties: false })], {
  description: "Identities of the same tenant (by name or labels), or addresses outside the mesh by CIDR",
});

export const PortSelector = Type.Object(
  {
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: "0 or absent: any port" })),
    protocol: Type.Optional(Type.Union([Type.Literal("tcp"), Type.Literal("udp"), Type.Literal("any")])),
  },
  { additionalProperties: false },
);

export const PolicyMode = Type.Union([Type.Literal("enforce"), Type.Literal("audit")], {
  description:
    "audit: staged, not enforced. What the policy (or rule) would drop passes and is reported as a flow with verdict audit naming the rule; switch to enforce with one write",
});
export type PolicyMode = Static<typeof PolicyMode>;

export const HttpMethod = Type.Union(
  ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"].map((m) => Type.Literal(m)),
  { description: "An HTTP method" },
);
export type HttpMethod = Static<typeof HttpMethod>;

const HttpPath = Type.String({ pattern: "^/[\\x21-\\x7e]*$", maxLength: 1024, description: "An absolute path: '/' then printable ASCII" });

const ClaimName = Type.String({ pattern: "^[A-Za-z0-9_.:-]+$", minLength: 1, maxLength: 128, description: "A top-level claim of the token's payload" });

/**
 * A JWT the request must carry (Authorization: Bearer) for a rule with it to
 * match: a JWT-SVID signed by a key of the named trust domain's bundle (the
 * tenant's own, or one it federates with), unexpired, for one of the
 * audiences, with every claim named holding one of its values.
 */
export const JwtRequirement = Type.Object(
  {
    trustDomain: Type.Optional({
      ...TrustDomain,
      description:
        "Whose JWT-SVID keys verify the token (and the trust domain its sub must be in): absent, the tenant's own; otherwise a trust domain the tenant federates with (422 for any other): by a pasted bundle, by another tenant (its keys count once it consents) or by a bundle endpoint (the keys of its last good fetch, refreshed in the background; none before the first)",
    }),
    audiences: Type.Array(Type.String({ minLength: 1, maxLength: 256, pattern: "^[\\x21-\\x7e]+$" }), {
      minItems: 1,
      maxItems: 8,
      uniqueItems: true,
      description: "The token's aud must hold one of these",
    }),
    claims: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: ClaimName,
            values: Type.Array(Type.String({ maxLength: 256, pattern: "^[\\x20-\\x7e]*$" }), { minItems: 1, maxItems: 16, description: "The claim (a string, or an array of strings) must hold one of these" }),
          },
          { additionalProperties: false },
        ),
        { maxItems: 8, description: "Every one must hold" },
      ),
    ),
  },
  {
    additionalProperties: false,
    description:
      "The rule matches only requests carrying such a token: a missing, malformed, forged, expired, wrong-audience or wrong-claim token does not match (an allow rule does not admit the request: 403 problem+json when the service is governed; a deny rule does not refuse it)",
  },
);
export type JwtRequirement = Static<typeof JwtRequirement>;

/**
 * L7 authorization (issue 21): an ingress rule with `http` is decided per
 * request by the L7 proxy of the caller's node, for the subject's L7
 * services (those an httpRoute names).
 */
export const HttpRuleMatch = Type.Object(
  {
    methods: Type.Optional(Type.Array(HttpMethod, { minItems: 1, maxItems: 9, uniqueItems: true, description: "Absent: any method" })),
    pathPrefixes: Type.Optional(
      Type.Array(HttpPath, { minItems: 1, maxItems: 32, description: "Segment prefixes ('/api' matches /api and /api/x, not /apix). Absent: any path" }),
    ),
    jwt: Type.Optional(JwtRequirement),
  },
  {
    additionalProperties: false,
    description:
      "Only on ingress rules, tcp ports (or none), identity peers. Decided per request by the L7 proxy for services an httpRoute names whose backends the policy selects: allow rules with http admit only matching requests (403 problem+json otherwise), deny rules with http refuse matching ones; deny wins. Traffic to services without routes is decided at L4 as if http were absent on allow rules; deny rules with http are then ignored",
  },
);
export type HttpRuleMatch = Static<typeof HttpRuleMatch>;

export const Rule = Type.Object(
  {
    peers: Type.Optional(Type.Array(Peer, { maxItems: 64, description: "Empty or absent: any peer" })),
    ports: Type.Optional(Type.Array(PortSelector, { maxItems: 64, description: "Empty or absent: any port and protocol" })),
    action: Type.Union([Type.Literal("allow"), Type.Literal("deny")], { description: "deny wins over allow" }),
    mode: Type.Optional({ ...PolicyMode, description: "audit stages this one rule in an enforced policy; default: the policy's mode" }),
    transport: Type.Optional({ ...Transport, description: `${Transport.description}. Default: the tenant's defaultTransport` }),
    http: Type.Optional(HttpRuleMatch),
  },
  { additionalProperties: false },
);

const Rules = (direction: string) =>
  Type.Array(Rule, {
    maxItems: 256,
    description: `Present (even empty): the subject is governed ${direction}, and what no rule allows drops`,
  });

export const PolicySpec = Type.Object(
  {
    subject: { ...Selector, description: "The identities of this tenant the policy applies to" },
    ingress: Type.Optional(Rules("for traffic it receives")),
    egress: Type.Optional(Rules("for traffic it sends")),
    mode: Type.Optional({ ...PolicyMode, description: `${PolicyMode.description}. Default enforce` }),
  },
  { additionalProperties: false, description: "At most 256 rules over both directions" },
);
export type PolicySpec = Static<typeof PolicySpec>;

// HTTP routes (http-routes.ts): the Gateway API HTTPRoute in its mesh (GAMMA) form, issue 21

const HeaderName = Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", minLength: 1, maxLength: 256, description: "An HTTP header name (RFC 9110 token)" });
// At least one character, as the Gateway API's: HAProxy takes no empty word where the proxy's config puts a value.
const HeaderValue = Type.String({ pattern: "^[\\x20-\\x7e]+$", maxLength: 4096, description: "Printable ASCII, at least one character" });
/** Gateway API's Duration: e.g. "2s", "500ms", "1m"; at most 1h. */
export const Duration = Type.String({ pattern: "^([0-9]{1,5}(h|m|s|ms)){1,4}$", maxLength: 32, description: "A Gateway API duration, e.g. 500ms, 2s, 1m30s" });

const HeaderPair = Type.Object({ name: HeaderName, value: HeaderValue }, { additionalProperties: false });

export const HttpRouteMatch = Type.Object(
  {
    path: Type.Optional(
      Type.Object(
        { type: Type.Optional(Type.Union([Type.Literal("Exact"), Type.Literal("PathPrefix")], { description: "Default PathPrefix" })), value: HttpPath },
        { additionalProperties: false },
      ),
    ),
    headers: Type.Optional(
      Type.Array(
        Type.Object({ type: Type.Optional(Type.Literal("Exact")), name: HeaderName, value: HeaderValue }, { additionalProperties: false }),
        { maxItems: 16, description: "All must match (names case-insensitive, values exact)" },
      ),
    ),
    method: Type.Optional(HttpMethod),
  },
  { additionalProperties: false, description: "Every condition given must hold" },
);

const HeaderModifier = Type.Object(
  {
    set: Type.Optional(Type.Array(HeaderPair, { maxItems: 16 })),
    add: Type.Optional(Type.Array(HeaderPair, { maxItems: 16 })),
    remove: Type.Optional(Type.Array(HeaderName, { maxItems: 16 })),
  },
  { additionalProperties: false },
);

export const HttpRouteFilter = Type.Union([
  Type.Object({ type: Type.Literal("RequestHeaderModifier"), requestHeaderModifier: HeaderModifier }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal("ResponseHeaderModifier"), responseHeaderModifier: HeaderModifier }, { additionalProperties: false }),
]);

export const RetryCondition = Type.Union(
  ["5xx", "gateway-error", "connect-failure", "reset", "timeout"].map((c) => Type.Literal(c)),
  {
    description:
      "5xx: any 500-504 answer; gateway-error: 502, 503, 504; connect-failure: no connection to the backend; reset: the backend closed without (a valid) answer; timeout: no answer within backendRequest",
  },
);

export const HttpBackendRef = Type.Object(
  {
    kind: Type.Optional(Type.Literal("Service")),
    name: Type.Optional({ ...Name, description: "A service of the same tenant whose backends take this share (the Gateway API's form: a canary between services web-v1 and web-v2); absent: the parent service" }),
    port: Type.Optional({ ...PortNumber, description: "With name: that service's tcp port whose targetPort the requests go to; may be absent when it has one tcp port" }),
    labels: Type.Optional({ ...Labels, description: "The subset of the service's backends (the named one, or the parent) whose identities carry these labels (selectors); absent: all of them" }),
    weight: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, description: "Relative share of the rule's requests; default 1; 0 sends none" })),
  },
  { additionalProperties: false },
);

export const HttpRouteRule = Type.Object(
  {
    matches: Type.Optional(Type.Array(HttpRouteMatch, { maxItems: 8, description: "Any one may match; absent or empty: every request (PathPrefix /)" })),
    backendRefs: Type.Array(HttpBackendRef, { minItems: 1, maxItems: 16 }),
    filters: Type.Optional(Type.Array(HttpRouteFilter, { maxItems: 4 })),
    timeouts: Type.Optional(
      Type.Object(
        {
          request: Type.Optional({ ...Duration, description: "The whole request, retries included; default none beyond the proxy's 30s" }),
          backendRequest: Type.Optional({ ...Duration, description: "Each attempt; at most request" }),
        },
        { additionalProperties: false },
      ),
    ),
    retry: Type.Optional(
      Type.Object(
        {
          attempts: Type.Integer({ minimum: 1, maximum: 5, description: "Retries after the first attempt" }),
          on: Type.Optional(Type.Array(RetryCondition, { minItems: 1, maxItems: 5, uniqueItems: true, description: "Default [connect-failure, gateway-error]" })),
          nonIdempotent: Type.Optional(Type.Boolean({ description: "Retry POST, PATCH and CONNECT too; default false (never retried)" })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const HttpRouteSpec = Type.Object(
  {
    parentRefs: Type.Array(
      Type.Object(
        {
          kind: Type.Optional(Type.Literal("Service")),
          name: { ...Name, description: "A service of the same tenant" },
          port: Type.Optional({ ...PortNumber, description: "One tcp port of the service; absent: every tcp port" }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 8 },
    ),
    rules: Type.Array(HttpRouteRule, {
      minItems: 1,
      maxItems: 32,
      description:
        "Across every route of a service port, the most specific match takes the request, as in the Gateway API: an Exact path before a prefix, a longer path before a shorter, a method before none, more headers before fewer; ties go to the route whose name sorts first, then the earlier rule. Requests no rule matches go to the whole service",
    }),
  },
  { additionalProperties: false },
);
export type HttpRouteSpec = Static<typeof HttpRouteSpec>;

// Traffic policies (traffic-policies.ts): circuit breaking, outlier ejection and rate limits of an L7 service, issue 21

export const TrafficPolicySpec = Type.Object(
  {
    targetRef: Type.Object(
      {
        kind: Type.Optional(Type.Literal("Service")),
        name: { ...Name, description: "A service of the same tenant; at most one traffic policy names a service" },
      },
      { additionalProperties: false },
    ),
    connectionPool: Type.Optional(
      Type.Object(
        {
          maxConnections: Type.Optional(
            Type.Integer({ minimum: 1, maximum: 100000, description: "Requests in flight from one node's proxy to one backend workload (Istio's maxConnections per host); past it requests wait in the queue" }),
          ),
          maxPendingRequests: Type.Optional(
            Type.Integer({ minimum: 0, maximum: 100000, description: "Requests one node's proxy holds waiting for a backend of the service; past it the proxy answers 503 problem+json at once" }),
          ),
        },
        { additionalProperties: false, description: "Circuit breaking. Absent fields: no limit" },
      ),
    ),
    outlierDetection: Type.Optional(
      Type.Object(
        {
          consecutive5xx: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: "Answers 500-599 (or no answer) in a row that eject a backend; default 5" })),
          interval: Type.Optional({ ...Duration, description: "How often ejections are reconsidered; default 10s" }),
          baseEjectionTime: Type.Optional({ ...Duration, description: "An ejected backend stays out this long times the number of times it was ejected (at most 300s); default 30s" }),
          maxEjectionPercent: Type.Optional(
            Type.Integer({ minimum: 0, maximum: 100, description: "At most this share of the service's backends is out at once (at least one may be); default 10" }),
          ),
        },
        { additionalProperties: false, description: "Passive ejection, decided by each node's proxy from the answers it sees" },
      ),
    ),
    rateLimit: Type.Optional(
      Type.Object(
        {
          requestsPerSecond: Type.Integer({ minimum: 1, maximum: 100000 }),
          burst: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000, description: "Requests allowed at once above the rate; default requestsPerSecond" })),
        },
        {
          additionalProperties: false,
          description:
            "Per source identity, by each node's proxy for its own callers: past it the caller gets 429 problem+json with Retry-After. An identity with workloads on n nodes may get n times the rate",
        },
      ),
    ),
  },
  { additionalProperties: false, description: "Applies to the service's L7 traffic (services an httpRoute names); a service without routes is not steered to the proxy and ignores it" },
);
export type TrafficPolicySpec = Static<typeof TrafficPolicySpec>;

/** Names HAProxy takes as section and server names: what the compiler mints. */
const ProxyName = Type.String({ pattern: "^[a-z0-9][a-z0-9_-]*$", maxLength: 128 });

const L7Server = Type.Object(
  {
    name: { ...ProxyName, description: "Stable while the workload is a backend: the runtime API addresses servers by it" },
    address: Ipv4,
    port: PortNumber,
    weight: Type.Integer({ minimum: 0, maximum: 256, description: "HAProxy server weight (the backend's share spread over its servers)" }),
    transport: Type.Optional(
      Type.Literal(true, {
        description:
          "The proxy reaches this backend through the node's transport (a workload on another node whose callers an mtls rule carries): the transport document lists it among proxyTargets. Absent: directly",
      }),
    ),
  },
  { additionalProperties: false },
);

const L7Backend = Type.Object(
  {
    name: { ...ProxyName, description: "The HAProxy backend section" },
    servers: Type.Array(L7Server, { maxItems: 1024, description: "Empty: the proxy answers 503" }),
    requestTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    backendRequestTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    retry: Type.Optional(
      Type.Object(
        { attempts: Type.Integer({ minimum: 1, maximum: 5 }), on: Type.Array(RetryCondition, { minItems: 1 }), nonIdempotent: Type.Boolean() },
        { additionalProperties: false },
      ),
    ),
    requestHeaders: Type.Optional(HeaderModifier),
    responseHeaders: Type.Optional(HeaderModifier),
  },
  { additionalProperties: false, description: "One HAProxy backend: a route rule's backend ref (or a service's default) with the rule's timeouts, retry and filters" },
);

const L7Rule = Type.Object(
  {
    route: { ...Name, description: "The httpRoute" },
    rule: Type.Integer({ minimum: 0, description: "Its index in the route's rules" }),
    matches: Type.Array(HttpRouteMatch, { description: "Any one; empty: every request. Path types filled in (Exact or PathPrefix)" }),
    backends: Type.Array(Type.Object({ backend: ProxyName, weight: Type.Integer({ minimum: 0, maximum: 1000 }) }, { additionalProperties: false }), {
      minItems: 1,
      description: "Picked per request by weight among those with a weight and servers",
    }),
  },
  { additionalProperties: false },
);

const L7Authorization = Type.Object(
  {
    governed: Type.Boolean({ description: "Some policy governs the backends' ingress: a request no allow entry admits is refused (403)" }),
    entries: Type.Array(
      Type.Object(
        {
          action: Type.Union([Type.Literal("allow"), Type.Literal("deny")]),
          sources: Type.Optional(Type.Array(SpiffeIdText, { description: "Absent: any caller of the tenant" })),
          methods: Type.Optional(Type.Array(HttpMethod)),
          pathPrefixes: Type.Optional(Type.Array(HttpPath)),
          jwt: Type.Optional(
            Type.Object(
              {
                trustDomain: { ...TrustDomain, description: "Its keys in the document's jwks verify the token; its sub must be in it" },
                audiences: Type.Array(Type.String()),
                claims: Type.Array(Type.Object({ name: ClaimName, values: Type.Array(Type.String()) }, { additionalProperties: false })),
              },
              { additionalProperties: false },
            ),
          ),
          policy: Name,
          rule: Type.Integer({ minimum: 0 }),
          groups: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { description: "Allow entries: the groups it admits requests for" })),
        },
        { additionalProperties: false },
      ),
    ),
    groups: Type.Optional(
      Type.Array(Type.Object({ subjects: Type.Array(SpiffeIdText) }, { additionalProperties: false }), {
        description:
          "The backends' identities whose ingress a policy governs, one group per set of allow entries admitting for them: a request is decided before its backend is picked, so it must be admitted in every group. Absent (an older API): one group every allow entry admits for",
      }),
    ),
  },
  { additionalProperties: false, description: "Deny wins; caller identity from the connection's source address (callers), never from a header" },
);

const L7Traffic = Type.Object(
  {
    policy: { ...Name, description: "The trafficPolicy" },
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
    rateLimit: Type.Optional(
      Type.Object({ requestsPerSecond: Type.Integer({ minimum: 1 }), burst: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false, description: "The service's trafficPolicy, defaults filled in; applies to every backend of the frontend" },
);

const L7Jwks = Type.Object(
  {
    tenant: { ...Name, description: "Whose keys: two tenants may name one trust domain with different keys (a pasted bundle is the tenant's word only)" },
    trustDomain: TrustDomain,
    keys: Type.Array(
      Type.Object(
        {
          kid: Type.String({ minLength: 1, maxLength: 256 }),
          alg: Type.Union([Type.Literal("ES256"), Type.Literal("ES384"), Type.Literal("RS256")]),
          publicKeyPem: Type.String({ maxLength: 8192, description: "SPKI, PEM" }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, description: "A trust domain's JWT-SVID keys (its bundle's jwt-svid entries)" },
);

/**
 * A node's L7 proxy configuration (GET /v1/nodes/{node}/l7), compiled from
 * httpRoutes, services, workloads and policies: pure, ETagged. The agent
 * renders haproxy.cfg from it and reports the ETag it serves (ReportedL7).
 */
export const L7Document = Type.Object(
  {
    proxyAddress: { ...Ipv4, description: "The address the node's proxy connects to backends from: the first address of the node's pod block (identity proxy in every ipcache)" },
    frontends: Type.Array(
      Type.Object(
        {
          name: { ...ProxyName, description: "Stable per (tenant, service, port)" },
          tenant: Name,
          service: Name,
          vip: Ipv4,
          port: PortNumber,
          rules: Type.Array(L7Rule, { description: "In order; the first match wins" }),
          defaultBackend: { ...ProxyName, description: "Requests no rule matches: the whole service" },
          authorization: L7Authorization,
          traffic: Type.Optional(L7Traffic),
          egressDenied: Type.Optional(
            Type.Array(SpiffeIdText, {
              description: "Callers of this node whose own egress policy does not let them reach every backend the frontend may send to: refused (403), as their direct connections would be. Absent: none",
            }),
          ),
        },
        { additionalProperties: false },
      ),
      { description: "Every L7 service frontend (a weft_l7 entry) a workload of this node may call: the services of the tenants with workloads here that an httpRoute names" },
    ),
    backends: Type.Array(L7Backend),
    callers: Type.Array(
      Type.Object({ address: Ipv4, tenant: Name, spiffeId: SpiffeIdText }, { additionalProperties: false }),
      { description: "Every address of this node's workloads: the proxy's only source of a caller's identity" },
    ),
    jwks: Type.Optional(Type.Array(L7Jwks, { description: "The keys of every (tenant, trust domain) an authorization entry's jwt names; an entry verifies with its frontend's tenant's keys only" })),
  },
  { additionalProperties: false, title: "L7Document" },
);
export type L7Document = Static<typeof L7Document>;

// Federations (federations.ts)

/** One key of a pasted SPIFFE bundle; checked in federations.ts (certificates parse, public keys only). */
export const BundleKey = Type.Object(
  {
    use: Type.String({ maxLength: 32 }),
    kty: Type.String({ maxLength: 16 }),
    kid: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    x5c: Type.Optional(Type.Array(Type.String({ maxLength: 16384 }), { maxItems: 1 })),
  },
  { additionalProperties: Type.Unknown() },
);

export const SpiffeBundleJwks = Type.Object(
  {
    keys: Type.Array(BundleKey, { minItems: 1, maxItems: 64 }),
    spiffe_sequence: Type.Optional(Type.Integer({ minimum: 0 })),
    spiffe_refresh_hint: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: Type.Unknown(), description: "A SPIFFE bundle (JWK set) as published: x509-svid keys with x5c, jwt-svid keys with kid" },
);

export const FederationSpec = Type.Object(
  {
    trustDomain: TrustDomain,
    bundle: Type.Union([
      Type.Object({ tenant: Name }, { additionalProperties: false, description: "Another Weft tenant: its CA, served once it declares the reverse federation" }),
      Type.Object({ spiffeBundle: SpiffeBundleJwks }, { additionalProperties: false }),
      Type.Object(
        {
          endpointUrl: Type.String({
            minLength: 9,
            maxLength: 2048,
            pattern: "^https://",
            description: "A SPIFFE bundle endpoint (https_web profile); its host[:port] must be in the operator's WEFT_FEDERATION_ENDPOINTS",
          }),
          endpointCa: Type.Optional(
            Type.String({ minLength: 1, maxLength: 65536, description: "PEM CA certificates trusted for the endpoint instead of the Web PKI roots" }),
          ),
        },
        { additionalProperties: false, description: "A SPIFFE bundle endpoint, fetched by the API at most once per refresh interval" },
      ),
    ]),
  },
  { additionalProperties: false },
);
export type FederationSpec = Static<typeof FederationSpec>;

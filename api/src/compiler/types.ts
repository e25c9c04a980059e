/**
 * The compiler's input (Snapshot) and output (NodeDatapath) types.
 *
 * A Snapshot is plain data the REST layer fills from rows; the compiler never
 * touches the database. Rows are treated as immutable values: the compiler
 * keeps references to them in its memo, so a changed row must be a new object
 * handed over through Compiler.apply (see compile.ts).
 */
import type { Entry } from "@weft/codec";

export type Ipv4 = string;
export type TransportProtocol = "tcp" | "udp";

export interface TenantRow {
  /** tenants.id: the u32 the datapath compares in [R5]; never 0 (0 is "no tenant"). */
  id: number;
  name: string;
  /** Verdict for a workload no policy selects in a direction (see policy.ts). */
  defaultAction: "allow" | "deny";
  /** Transport of the policy rules that name none (steer.ts); absent: plaintext. */
  defaultTransport?: "plaintext" | "mtls";
  /** The tenant's SPIFFE trust domain: with an identity's path, the SPIFFE ID the L7 proxy knows callers by (l7.ts). */
  trustDomain?: string;
  /**
   * The JWT-SVID keys the tenant's L7 rules may verify tokens with, by trust
   * domain: its own CA's (every slot: prepared, active and old) and those of
   * the federations whose bundle it pasted (l7.ts jwks). Absent: none.
   */
  jwtKeys?: readonly TrustDomainJwtKeys[];
  /**
   * The tenant CA's certificates (every stored slot, oldest first), PEM: the
   * X.509 roots node transports verify its SVIDs with (mesh/transport.ts).
   * The compiler does not read it; it rides here so that a CA rotation
   * reaches the follower's rows as the JWT keys do. Absent: no CA yet.
   */
  trustBundlePem?: string;
}

export interface JwtKey {
  kid: string;
  alg: "ES256" | "ES384" | "RS256";
  /** SPKI, PEM. */
  publicKeyPem: string;
}

export interface TrustDomainJwtKeys {
  trustDomain: string;
  keys: readonly JwtKey[];
}

export interface IdentityRow {
  tenantId: number;
  name: string;
  /** identities.security_identity: u32 >= 256, unique across tenants. */
  numericId: number;
  labels: Readonly<Record<string, string>>;
  /** SPIFFE ID path ("/ns/prod/sa/web"); absent: no SPIFFE ID (the L7 document leaves it out). */
  path?: string;
}

export interface WorkloadRow {
  tenantId: number;
  name: string;
  /** Name of an identity of the same tenant. */
  identity: string;
  node: string;
  /** The first address is the one a service sends to (selector backends). */
  addresses: readonly Ipv4[];
  interface?: string;
  /**
   * The node's agent reported the workload's health check failing past its
   * threshold: its backends get no slots while any backend of the service
   * still serves (services.ts). Absent: healthy or not probed.
   */
  unhealthy?: boolean;
}

/** Selects identities of the subject's own tenant; {} selects all of them. */
export interface IdentitySelector {
  identity?: string;
  labels?: Readonly<Record<string, string>>;
}

export interface ServicePort {
  port: number;
  protocol: TransportProtocol;
  targetPort: number;
}

export interface ExplicitBackend {
  workload?: string;
  address?: Ipv4;
  /** Defaults to the service port's targetPort. */
  port?: number;
  /** 0..1,000,000 (Gateway API); 0 keeps the backend but gives it no traffic. */
  weight: number;
  /** Defaults to the zone of the named workload's node. */
  zone?: string;
}

export type ServiceBackends = { selector: IdentitySelector } | { explicit: readonly ExplicitBackend[] };

export interface ServiceRow {
  /** u32 < 2^28, stable for the service's life: the high bits of its lookup-table ids. */
  id: number;
  tenantId: number;
  name: string;
  vip: Ipv4;
  /** At most 16 ports. */
  ports: readonly ServicePort[];
  backends: ServiceBackends;
  /** Carried for the agent; the v1 socket LB draws a uniform random slot either way. */
  loadBalancing: "maglev" | "random";
  preferSameZone: boolean;
}

export type PeerSelector = IdentitySelector | { cidr: string };

export interface PortSelector {
  /** 0 or absent: any port. */
  port?: number;
  /** Absent: any. */
  protocol?: TransportProtocol | "any";
}

export interface PolicyRule {
  /** Empty: any peer (of this tenant or the world; other tenants are dropped before policy). */
  peers: readonly PeerSelector[];
  /** Empty: any port and protocol. */
  ports: readonly PortSelector[];
  action: "allow" | "deny";
  /** Absent: the policy's mode. */
  mode?: "enforce" | "audit";
  /** Absent: the tenant's defaultTransport (steer.ts). */
  transport?: "plaintext" | "mtls";
  /**
   * Ingress only: decided per request by the L7 proxy for the subject's L7
   * services (l7.ts). At L4 an allow rule with http allows as if it were
   * absent, and a deny rule with http writes nothing (policy.ts).
   */
  http?: HttpRuleMatch;
}

export type HttpMethod = "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "CONNECT" | "TRACE";

export interface HttpRuleMatch {
  /** Absent: any method. */
  methods?: readonly HttpMethod[];
  /** Segment prefixes; absent: any path. */
  pathPrefixes?: readonly string[];
  /** The rule matches only requests carrying such a token (mesh/specs.ts JwtRequirement). */
  jwt?: JwtRequirement;
}

export interface JwtRequirement {
  /** Absent: the tenant's own. */
  trustDomain?: string;
  audiences: readonly string[];
  claims?: readonly { name: string; values: readonly string[] }[];
}

export interface PolicyRow {
  /** u32 < 2^24 from the database, stable: the high bits of every rule id it writes. */
  id: number;
  tenantId: number;
  name: string;
  subject: IdentitySelector;
  /**
   * Absent: the policy does not govern that direction. Present (even empty):
   * the subject is selected in that direction, so what no rule allows drops.
   * At most 256 rules over both directions (ingress first).
   */
  ingress?: readonly PolicyRule[];
  egress?: readonly PolicyRule[];
  /** "audit": every rule of the policy, and its selection of the subject, is staged (weft_audit only). Absent: enforce. */
  mode?: "enforce" | "audit";
}

export interface NodeRow {
  name: string;
  zone: string;
  /**
   * The API heard no status from the node's agent within the grace period:
   * backends of workloads on it get no slots anywhere while any backend of
   * the service still serves. Absent: reachable.
   */
  unreachable?: boolean;
  /** The node's block of the pod CIDR ("10.0.3.0/24"); its first address is the node's L7 proxy address (l7.ts). Absent: none yet. */
  podCidr?: string;
}

/** An HTTP route (the Gateway API HTTPRoute, mesh form): the services it names are L7 on the ports it names (l7.ts). */
export interface HttpRouteRow {
  /** http_routes.id: stable for the route's life, names its HAProxy sections. */
  id: number;
  tenantId: number;
  name: string;
  parentRefs: readonly HttpParentRef[];
  rules: readonly HttpRouteRule[];
}

export interface HttpParentRef {
  /** A service of the route's tenant. */
  name: string;
  /** One tcp port of it; absent: every tcp port. */
  port?: number;
}

export interface HttpHeaderPair {
  name: string;
  value: string;
}

export interface HttpRouteMatch {
  path?: { type?: "Exact" | "PathPrefix"; value: string };
  headers?: readonly { type?: "Exact"; name: string; value: string }[];
  method?: HttpMethod;
}

export interface HttpHeaderModifier {
  set?: readonly HttpHeaderPair[];
  add?: readonly HttpHeaderPair[];
  remove?: readonly string[];
}

export type HttpRouteFilter =
  | { type: "RequestHeaderModifier"; requestHeaderModifier: HttpHeaderModifier }
  | { type: "ResponseHeaderModifier"; responseHeaderModifier: HttpHeaderModifier };

export type RetryCondition = "5xx" | "gateway-error" | "connect-failure" | "reset" | "timeout";

/** A share of a rule's requests: the parent's backends, or another service's of the tenant (name, on port's target port). */
export interface HttpBackendRef {
  kind?: "Service";
  name?: string;
  /** With name: that service's tcp port; absent: its one tcp port. */
  port?: number;
  labels?: Readonly<Record<string, string>>;
  weight?: number;
}

export interface HttpRouteRule {
  matches?: readonly HttpRouteMatch[];
  backendRefs: readonly HttpBackendRef[];
  filters?: readonly HttpRouteFilter[];
  timeouts?: { request?: string; backendRequest?: string };
  retry?: { attempts: number; on?: readonly RetryCondition[]; nonIdempotent?: boolean };
}

/**
 * A traffic policy (TrafficPolicySpec, as written): circuit breaking,
 * outlier ejection and a per-identity rate limit for one service's L7
 * frontends (l7.ts fills the defaults in). At most one names a service.
 */
export interface TrafficPolicyRow {
  tenantId: number;
  name: string;
  /** targetRef.name: a service of the policy's tenant. */
  service: string;
  connectionPool?: { maxConnections?: number; maxPendingRequests?: number };
  outlierDetection?: { consecutive5xx?: number; interval?: string; baseEjectionTime?: string; maxEjectionPercent?: number };
  rateLimit?: { requestsPerSecond: number; burst?: number };
}

export interface Snapshot {
  tenants: readonly TenantRow[];
  identities: readonly IdentityRow[];
  workloads: readonly WorkloadRow[];
  services: readonly ServiceRow[];
  policies: readonly PolicyRow[];
  nodes: readonly NodeRow[];
  /**
   * Backend ids by "address:port", allocated once by the database and never
   * reused, so adding a backend never renumbers another (ids.ts assignIds
   * computes the missing ones). Every backend a service resolves to needs one.
   */
  backendIds: ReadonlyMap<string, number>;
  /**
   * Identity of every CIDR peer named by a policy, by canonical prefix
   * ("10.0.0.0/8"), from the same sequence as identities (so never equal to a
   * workload identity). The datapath sees a CIDR as an ipcache prefix.
   */
  cidrIdentities: ReadonlyMap<string, number>;
  /** Absent: none. */
  httpRoutes?: readonly HttpRouteRow[];
  /** Absent: none. */
  trafficPolicies?: readonly TrafficPolicyRow[];
}

/** The maps the compiler writes; sock_rev, ct, metrics and the flow maps belong to the datapath and the agent. */
export const DATAPATH_MAPS = ["ipcache", "endpoint", "policy", "svc", "lb_slot", "backend", "audit", "steer", "l7"] as const;
export type DatapathMap = (typeof DATAPATH_MAPS)[number];

export type DatapathMaps = { [M in DatapathMap]: Entry<M>[] };
export type MapCounts = Record<DatapathMap, number>;

/**
 * The entries one owner (a tenant's addresses, an identity's policy, a
 * service's tables, a backend) contributes to a node. Each key belongs to
 * exactly one owner on a node, so diffs can skip owners whose digest is equal.
 */
export interface Part {
  readonly owner: string;
  /** sha256 of the canonical serialization of `entries`. */
  readonly digest: string;
  readonly entries: Partial<DatapathMaps>;
  /** Backend owners this part's lb_slot entries name (services only). */
  readonly backendOwners?: readonly string[];
  /**
   * Services only, "tenant/service": every backend with weight is withdrawn
   * (unhealthy, or on an unreachable node), so all of them keep their slots
   * (fail open, as Envoy's panic threshold does).
   */
  readonly failingOpen?: string;
}

export interface NodeDatapath {
  readonly node: string;
  /** sha256 over the sorted (owner, digest) list: equal content, equal hash. */
  readonly hash: string;
  readonly counts: MapCounts;
  /** Owners in sorted order. */
  readonly parts: ReadonlyMap<string, Part>;
  /** "tenant/service" of every service failing open on this node (Part.failingOpen), sorted. */
  readonly failingOpen: readonly string[];
  /** Every entry, owners in sorted order, each owner's entries in key order; built on first use. */
  readonly maps: DatapathMaps;
}

export interface DatapathDelta {
  upserts: DatapathMaps;
  deletes: { [M in DatapathMap]: Entry<M>["key"][] };
}

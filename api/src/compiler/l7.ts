/**
 * The per-node L7 proxy (issue 21), compiled: what the kernel needs of it
 * (the proxy addresses in ipcache, the proxy's ingress allows) and the
 * node's L7 document (GET /v1/nodes/{node}/l7) the agent renders haproxy.cfg
 * from. Pure, like the rest of the compiler.
 *
 * How a request flows: a service is L7 on a tcp port an httpRoute names
 * (services.ts writes weft_l7 there instead of weft_svc); the caller's node
 * hands the connection to its proxy, which knows the caller by its source
 * address (callers), decides the request (authorization), picks a backend
 * and connects to it from the node's proxy address: the first address of
 * the node's pod block, which every node's ipcache maps to IDENTITY_PROXY
 * without a tenant. A backend whose ingress some policy governs gets an
 * allow for that identity on its target port: the proxy already decided
 * the caller's policy, per request.
 */
import { constants, formatIPv4, parseIPv4, protocols, type Entry } from "@weft/codec";
import { spiffeId } from "../ca/spiffe-id.ts";
import { makePart } from "./parts.ts";
import { enforcesDirection, policyPart, stagesDirection } from "./policy.ts";
import { policyProbe } from "./policy-lookup.ts";
import { parsePrefix, selects } from "./select.ts";
import { chooseByZone, resolveBackends, servingPool, type ResolvedBackend } from "./services.ts";
import { carriedByTransport, mtlsPorts } from "./transport.ts";
import { l7Ports, trafficPolicyOf, type SnapshotIndex, type TenantIndex } from "./snapshot-index.ts";
import type {
  HttpBackendRef,
  HttpHeaderModifier,
  HttpMethod,
  HttpRouteMatch,
  HttpRouteRow,
  IdentityRow,
  JwtKey,
  Part,
  PeerSelector,
  PolicyRow,
  PolicyRule,
  PortSelector,
  RetryCondition,
  ServicePort,
  ServiceRow,
  TenantRow,
  TrafficPolicyRow,
} from "./types.ts";

/**
 * The rule id of the proxy's allow entries: policy id 0 never comes out of
 * ruleIdOf (policy ids start at 1, so rule ids at 256), and 0 is the
 * default-deny marker, so 1 names "the node's L7 proxy" in flows.
 */
export const L7_PROXY_RULE_ID = 1;

/** HAProxy server weights run 0..256. */
const SERVER_WEIGHT_MAX = 256;
const DEFAULT_RETRY_ON: readonly RetryCondition[] = ["connect-failure", "gateway-error"];

/** The node's proxy address: the first address of its pod block (network + 1); null without a block. */
export function proxyAddressOf(podCidr: string | undefined): string | null {
  if (podCidr === undefined) return null;
  const block = parsePrefix(podCidr);
  return block.len >= 31 ? null : formatIPv4(block.addr + 1);
}

/**
 * Every node's proxy address as a /32 of IDENTITY_PROXY without a tenant:
 * one part every node holds. An address a workload holds (one placed before
 * the address was reserved) stays the workload's: the key has one owner.
 */
export function proxyAddressPart(index: SnapshotIndex): Part {
  const addresses = new Set<string>();
  for (const n of index.nodes.values()) {
    const address = proxyAddressOf(n.podCidr);
    if (address !== null && !index.addressTenant.has(address)) addresses.add(address);
  }
  const ipcache: Entry<"ipcache">[] = [...addresses]
    .sort((a, b) => parseIPv4(a) - parseIPv4(b))
    .map((address) => ({ key: { prefix: `${address}/32` }, value: { identity: constants.IDENTITY_PROXY!, tenant: 0 } }));
  return makePart(PROXY_OWNER, { ipcache });
}

export const PROXY_OWNER = "n:proxies";
export const l7AllowOwner = (numericId: number): string => `l:${numericId}`;

/**
 * The proxy's ingress allows, per backend identity of the tenant's L7
 * frontends whose ingress the datapath decides by policy (enforcesDirection):
 * (identity, IDENTITY_PROXY, target port, tcp). Without them a governed
 * backend drops every proxied request; with them the kernel lets the proxy
 * through and the proxy applies the rules, per request. Where an audit
 * policy stages ingress, the same allows go into weft_audit. The key never
 * clashes with a policy part's: no rule names a reserved identity.
 */
export function l7AllowParts(index: SnapshotIndex, t: TenantIndex): Map<number, Part> {
  const parts = new Map<number, Part>();
  for (const [numericId, set] of l7BackendPorts(index, t)) {
    const identity = index.identitiesById.get(numericId)!;
    const selecting = [...t.policies.values()].filter((p) => selects(p.subject, identity));
    const enforced = enforcesDirection(t, selecting, "ingress");
    // An audit policy's probe would otherwise report every proxied connection as a drop it would make.
    const staged = stagesDirection(selecting, "ingress");
    if (!enforced && !staged) continue;
    const mtls = proxyHopMtls(t, identity);
    const allows = (withMtls: boolean) =>
      [...set]
        .sort((a, b) => a - b)
        .map((port) => ({
          key: { localIdentity: numericId, remoteIdentity: constants.IDENTITY_PROXY!, port, protocol: protocols.tcp, direction: "ingress" as const },
          value: { action: "allow" as const, ruleId: L7_PROXY_RULE_ID, ...(withMtls && mtls(port) ? { mtls: true as const } : {}) },
        }));
    // weft_audit entries never carry the flag (policy.ts).
    parts.set(numericId, makePart(l7AllowOwner(numericId), { ...(enforced ? { policy: allows(true) } : {}), ...(staged ? { audit: allows(false) } : {}) }));
  }
  return parts;
}

/** The target ports of every backend identity of the tenant's L7 frontends (its own and the services its routes name). */
function l7BackendPorts(index: SnapshotIndex, t: TenantIndex): Map<number, Set<number>> {
  const ports = new Map<number, Set<number>>();
  if (t.httpRoutes.size === 0) return ports;
  const identityAt = backendIdentities(t);
  for (const s of t.services.values()) {
    for (const sp of l7Ports(t, s)) {
      for (const b of routeTargets(t, s, sp).flatMap((target) => resolveBackends(index, t, target.service, target.port))) {
        const identity = identityAt.get(b.address);
        if (identity === undefined) continue;
        let set = ports.get(identity.numericId);
        if (set === undefined) ports.set(identity.numericId, (set = new Set()));
        set.add(b.port);
      }
    }
  }
  return ports;
}

/**
 * On which ports the proxy's hop to a backend identity must be carried by
 * the transport: those an enforced mtls rule covers, an ingress rule of a
 * policy selecting the backend or an egress rule naming it as a peer (its
 * callers reach it only through the transport, so the proxy that calls on
 * their behalf does too). The caller's node then sends that hop through its
 * transport (l7Document's `transport` servers), the backend's transport lets
 * node proxies in to it (proxyInboundHops), and where the backend's ingress
 * is governed its node drops plaintext from another node's proxy address
 * (the proxy's allow entry carries mtls: l7AllowParts).
 */
export function proxyHopMtls(t: TenantIndex, identity: IdentityRow): (port: number) => boolean {
  const ports = new Set<number>();
  const add = (rule: PolicyRule) => mtlsPorts(rule.ports).forEach((port) => ports.add(port));
  for (const p of t.policies.values()) {
    if (selects(p.subject, identity)) for (const rule of p.ingress ?? []) if (carriedByTransport(rule, t.row, p.mode)) add(rule);
    for (const rule of p.egress ?? []) {
      const names = rule.peers.length === 0 || rule.peers.some((sel) => !("cidr" in sel) && selects(sel, identity));
      if (names && carriedByTransport(rule, t.row, p.mode)) add(rule);
    }
  }
  return (port) => ports.has(0) || ports.has(port);
}

/**
 * What node's transport lets other nodes' proxies open streams to: each L7
 * backend identity with a workload on the node, and the ports on which the
 * proxy's hop to it is mtls (proxyHopMtls), in identity order.
 */
export function proxyInboundHops(index: SnapshotIndex, node: string): { localIdentity: number; ports: number[] }[] {
  const out: { localIdentity: number; ports: number[] }[] = [];
  for (const [tenantId, names] of index.byNode.get(node) ?? []) {
    const t = index.tenant(tenantId);
    const local = new Set([...names].flatMap((name) => t.identities.get(t.workloads.get(name)?.identity ?? "")?.numericId ?? []));
    for (const [numericId, set] of l7BackendPorts(index, t)) {
      if (!local.has(numericId)) continue;
      const mtls = proxyHopMtls(t, index.identitiesById.get(numericId)!);
      const ports = [...set].filter(mtls).sort((a, b) => a - b);
      if (ports.length > 0) out.push({ localIdentity: numericId, ports });
    }
  }
  return out.sort((a, b) => a.localIdentity - b.localIdentity);
}

/** Where a backend ref sends: another service's port (its one tcp port when the ref names none), or the frontend's own. */
interface RefTarget {
  service: ServiceRow;
  port: ServicePort;
}

/** The ref's target; null when the named service or port is not in the snapshot (the API refuses such a route: it gets no servers). */
function refTarget(t: TenantIndex, s: ServiceRow, sp: ServicePort, ref: HttpBackendRef): RefTarget | null {
  if (ref.name === undefined) return { service: s, port: sp };
  const named = t.services.get(ref.name);
  const tcp = named?.ports.filter((p) => p.protocol === "tcp") ?? [];
  const port = ref.port === undefined ? (tcp.length === 1 ? tcp[0] : undefined) : tcp.find((p) => p.port === ref.port);
  return named === undefined || port === undefined ? null : { service: named, port };
}

const targetKey = (target: RefTarget): string => `${target.service.id}:${target.port.port}`;

/** Every service port a frontend's requests may reach: its own, then each other one its routes' backend refs name. */
function routeTargets(t: TenantIndex, s: ServiceRow, sp: ServicePort): RefTarget[] {
  const out = new Map<string, RefTarget>([[targetKey({ service: s, port: sp }), { service: s, port: sp }]]);
  for (const route of routesOf(t, s, sp)) {
    for (const rule of route.rules) {
      for (const ref of rule.backendRefs) {
        const target = refTarget(t, s, sp, ref);
        if (target !== null && !out.has(targetKey(target))) out.set(targetKey(target), target);
      }
    }
  }
  return [...out.values()];
}

/**
 * The node's callers of tenant `t` (its workloads `names` there) whose
 * egress a policy decides, each with its probe ([R17]: the kernel hands
 * their connections to the proxy without an egress decision, so the proxy
 * holds them to it), in SPIFFE ID order.
 */
function callersEgress(index: SnapshotIndex, t: TenantIndex, names: ReadonlySet<string>): { spiffeId: string; allows: ReturnType<typeof policyProbe> }[] {
  const identities = new Map<number, IdentityRow>();
  for (const name of names) {
    const identity = t.identities.get(t.workloads.get(name)?.identity ?? "");
    if (identity !== undefined) identities.set(identity.numericId, identity);
  }
  const out: { spiffeId: string; allows: ReturnType<typeof policyProbe> }[] = [];
  for (const identity of identities.values()) {
    const selecting = [...t.policies.values()].filter((p) => selects(p.subject, identity));
    const spiffeId = spiffeIdOf(t, identity);
    if (spiffeId === undefined || !enforcesDirection(t, selecting, "egress")) continue;
    out.push({ spiffeId, allows: policyProbe(policyPart(index, t, identity).entries.policy ?? [], identity.numericId, "egress") });
  }
  return out.sort((a, b) => compare(a.spiffeId, b.spiffeId));
}

/** Whether node's proxy reaches a backend through the transport: a workload of another node whose proxy hop is mtls. */
function transportHops(t: TenantIndex, node: string, identityAt: ReadonlyMap<string, IdentityRow>): (b: ResolvedBackend) => boolean {
  const nodeAt = new Map<string, string>();
  for (const w of t.workloads.values()) if (w.addresses[0] !== undefined) nodeAt.set(w.addresses[0], w.node);
  const hopByIdentity = new Map<number, (port: number) => boolean>();
  return (b) => {
    const at = nodeAt.get(b.address);
    const identity = identityAt.get(b.address);
    if (at === undefined || at === node || identity === undefined) return false;
    let mtls = hopByIdentity.get(identity.numericId);
    if (mtls === undefined) hopByIdentity.set(identity.numericId, (mtls = proxyHopMtls(t, identity)));
    return mtls(b.port);
  };
}

/** The identity of each of the tenant's workloads by its first address: the one a service sends to. */
function backendIdentities(t: TenantIndex): Map<string, IdentityRow> {
  const out = new Map<string, IdentityRow>();
  for (const w of t.workloads.values()) {
    const identity = t.identities.get(w.identity);
    if (identity !== undefined && w.addresses[0] !== undefined) out.set(w.addresses[0], identity);
  }
  return out;
}

// ---- the node's L7 document ---------------------------------------------

export interface L7Server {
  name: string;
  address: string;
  port: number;
  weight: number;
  /** The proxy reaches it through the node's transport (proxyHopMtls: a backend on another node). */
  transport?: true;
}

export interface L7HeaderModifier {
  set?: { name: string; value: string }[];
  add?: { name: string; value: string }[];
  remove?: string[];
}

export interface L7Backend {
  name: string;
  servers: L7Server[];
  requestTimeoutMs?: number;
  backendRequestTimeoutMs?: number;
  retry?: { attempts: number; on: RetryCondition[]; nonIdempotent: boolean };
  requestHeaders?: L7HeaderModifier;
  responseHeaders?: L7HeaderModifier;
}

/** A route match with its defaults filled in. */
export interface L7Match {
  path?: { type: "Exact" | "PathPrefix"; value: string };
  headers?: { type: "Exact"; name: string; value: string }[];
  method?: HttpMethod;
}

export interface L7AuthorizationEntry {
  action: "allow" | "deny";
  sources?: string[];
  methods?: HttpMethod[];
  pathPrefixes?: string[];
  jwt?: L7Jwt;
  policy: string;
  rule: number;
  /** Allow entries: the groups (authorization.groups) it admits requests for. */
  groups?: number[];
}

/** A rule's JWT requirement with its defaults filled in: the tenant's own trust domain, no claims. */
export interface L7Jwt {
  trustDomain: string;
  audiences: string[];
  claims: { name: string; values: string[] }[];
}

/** The keys of one tenant's trust domain: keyed by tenant too, since another tenant may name the same trust domain with other keys. */
export interface L7Jwks {
  tenant: string;
  trustDomain: string;
  keys: JwtKey[];
}

/** A service's trafficPolicy with its defaults filled in, durations in ms: what the proxy applies to every backend of the frontend. */
export interface L7Traffic {
  policy: string;
  maxConnections?: number;
  maxPendingRequests?: number;
  outlier?: { consecutive5xx: number; intervalMs: number; baseEjectionMs: number; maxEjectionPercent: number };
  rateLimit?: { requestsPerSecond: number; burst: number };
}

export interface L7Frontend {
  name: string;
  tenant: string;
  service: string;
  vip: string;
  port: number;
  rules: { route: string; rule: number; matches: L7Match[]; backends: { backend: string; weight: number }[] }[];
  defaultBackend: string;
  /** groups: the governed backends' identities, by the allow entries that admit for them; a request must be admitted in each. */
  authorization: { governed: boolean; entries: L7AuthorizationEntry[]; groups: { subjects: string[] }[] };
  /** Absent when no trafficPolicy names the service. */
  traffic?: L7Traffic;
  /**
   * Callers of this node whose own egress policy does not let them reach
   * every backend the frontend may send to (their SPIFFE IDs): refused, as
   * their direct connections would be. Absent: none.
   */
  egressDenied?: string[];
}

/** The shape of L7Document (mesh/specs.ts; the compiler imports no mesh code, the route's schema checks it). */
export interface L7Config {
  proxyAddress: string;
  frontends: L7Frontend[];
  backends: L7Backend[];
  callers: { address: string; tenant: string; spiffeId: string }[];
  jwks?: L7Jwks[];
}

/**
 * The node's L7 document: the L7 frontends of the tenants with a workload
 * on the node (a tenant absent from it is never named), in (tenant, service,
 * port) order; their backends; and the node's own workloads as callers.
 * Null when the node is unknown or has no pod block (no proxy address).
 */
export function l7Document(index: SnapshotIndex, node: string): L7Config | null {
  const row = index.nodes.get(node);
  const proxyAddress = proxyAddressOf(row?.podCidr);
  if (row === undefined || proxyAddress === null) return null;
  const present = [...(index.byNode.get(node)?.entries() ?? [])].map(([id, names]) => ({ t: index.tenant(id), names }));
  present.sort((a, b) => compare(a.t.row.name, b.t.row.name));
  const frontends: L7Frontend[] = [];
  const backends: L7Backend[] = [];
  for (const { t, names } of present) {
    if (t.httpRoutes.size === 0) continue;
    const identityAt = backendIdentities(t);
    const viaTransport = transportHops(t, node, identityAt);
    const egress = callersEgress(index, t, names);
    for (const s of [...t.services.values()].sort((a, b) => compare(a.name, b.name))) {
      for (const sp of l7Ports(t, s).sort((a, b) => a.port - b.port)) {
        const built = frontendOf(index, t, identityAt, viaTransport, s, sp, row.zone);
        const denied = egress.filter((c) => built.reach.some((b) => !c.allows(b.identity, b.port, protocols.tcp))).map((c) => c.spiffeId);
        if (denied.length > 0) built.frontend.egressDenied = denied;
        frontends.push(built.frontend);
        backends.push(...built.backends);
      }
    }
  }
  const callers = present.flatMap(({ t, names }) =>
    [...names].flatMap((name) => {
      const w = t.workloads.get(name)!;
      const id = spiffeIdOf(t, t.identities.get(w.identity));
      return id === undefined ? [] : w.addresses.map((address) => ({ address, tenant: t.row.name, spiffeId: id }));
    }),
  );
  callers.sort((a, b) => parseIPv4(a.address) - parseIPv4(b.address));
  const jwks = jwksOf(present.map(({ t }) => t.row), frontends);
  return { proxyAddress, frontends, backends, callers, ...(jwks.length === 0 ? {} : { jwks }) };
}

/**
 * The keys of every (tenant, trust domain) an authorization entry's jwt
 * names, in that order. A trust domain the tenant holds no keys of (a
 * federation since deleted) is listed with none: no token verifies.
 */
function jwksOf(tenants: readonly TenantRow[], frontends: readonly L7Frontend[]): L7Jwks[] {
  const named = new Map<string, { tenant: string; trustDomain: string }>();
  for (const f of frontends) {
    for (const e of f.authorization.entries) {
      if (e.jwt !== undefined) named.set(JSON.stringify([f.tenant, e.jwt.trustDomain]), { tenant: f.tenant, trustDomain: e.jwt.trustDomain });
    }
  }
  const tenantsByName = new Map(tenants.map((t) => [t.name, t]));
  return [...named.values()]
    .sort((a, b) => compare(a.tenant, b.tenant) || compare(a.trustDomain, b.trustDomain))
    .map(({ tenant, trustDomain }) => {
      const held = tenantsByName.get(tenant)?.jwtKeys?.find((k) => k.trustDomain === trustDomain)?.keys ?? [];
      const keys = [...held].sort((a, b) => compare(a.kid, b.kid)).map((k) => ({ kid: k.kid, alg: k.alg, publicKeyPem: k.publicKeyPem }));
      return { tenant, trustDomain, keys };
    });
}

const spiffeIdOf = (t: TenantIndex, identity: IdentityRow | undefined): string | undefined =>
  identity?.path === undefined || t.row.trustDomain === undefined ? undefined : spiffeId(t.row.trustDomain, identity.path);

/** Names are ids, never names: a rename reshuffles no HAProxy section. */
const frontendName = (s: ServiceRow, sp: ServicePort): string => `s${s.id}-p${sp.port}`;

function frontendOf(
  index: SnapshotIndex,
  t: TenantIndex,
  identityAt: ReadonlyMap<string, IdentityRow>,
  viaTransport: (b: ResolvedBackend) => boolean,
  s: ServiceRow,
  sp: ServicePort,
  zone: string,
): { frontend: L7Frontend; backends: L7Backend[]; reach: { identity: number; port: number }[] } {
  const name = frontendName(s, sp);
  const targets = routeTargets(t, s, sp);
  const resolvedAt = new Map(targets.map((target) => [targetKey(target), resolveBackends(index, t, target.service, target.port)]));
  const resolved = resolvedAt.get(targetKey({ service: s, port: sp }))!;
  const nearestOf = (service: ServiceRow, subset: ResolvedBackend[]): ResolvedBackend[] => chooseByZone(servingPool(subset).backends, service.preferSameZone ? zone : null);
  const nearest = (subset: ResolvedBackend[]): ResolvedBackend[] => nearestOf(s, subset);
  const serverOf = (b: ResolvedBackend, weight: number): L7Server => {
    const id = index.backendIds.get(b.key);
    return { name: id === undefined ? `a${b.address.replaceAll(".", "-")}-${b.port}` : `b${id}`, address: b.address, port: b.port, weight, ...(viaTransport(b) ? { transport: true as const } : {}) };
  };
  const defaultPool = nearest(resolved);
  const defaultWeights = serverWeights(defaultPool.map((b) => b.weight));
  const backends: L7Backend[] = [{ name: `${name}-default`, servers: defaultPool.map((b, i) => serverOf(b, defaultWeights[i]!)) }];
  const rules: L7Frontend["rules"] = [];
  for (const route of routesOf(t, s, sp)) {
    route.rules.forEach((rule, ruleIndex) => {
      const refs = rule.backendRefs.map((ref, refIndex) => {
        const target = refTarget(t, s, sp, ref);
        const pool = target === null ? [] : resolvedAt.get(targetKey(target))!;
        const subset = target === null ? [] : nearestOf(target.service, pool.filter((b) => ref.labels === undefined || labelled(identityAt.get(b.address), ref.labels)));
        return { name: `${name}-r${route.id}-${ruleIndex}-${refIndex}`, weight: ref.weight ?? 1, subset };
      });
      // Each server's share of the rule: its ref's share, spread over the ref's servers by their own weights.
      const shares = refs.flatMap((ref) => {
        const total = ref.subset.reduce((sum, b) => sum + b.weight, 0);
        return ref.subset.map((b) => ({ ref: ref.weight * b.weight, of: total }));
      });
      const weights = serverWeights(shares.map((x) => x.ref), shares.map((x) => x.of));
      let at = 0;
      for (const ref of refs) {
        backends.push({ name: ref.name, servers: ref.subset.map((b) => serverOf(b, weights[at++]!)), ...settingsOf(rule) });
      }
      rules.push({ route: route.name, rule: ruleIndex, matches: (rule.matches ?? []).map(filledMatch), backends: refs.map((r) => ({ backend: r.name, weight: r.weight })) });
    });
  }
  const frontend: L7Frontend = {
    name,
    tenant: t.row.name,
    service: s.name,
    vip: s.vip,
    port: sp.port,
    rules: byPrecedence(rules),
    defaultBackend: `${name}-default`,
    authorization: authorizationOf(
      t,
      targets.map((target) => ({ identities: resolvedAt.get(targetKey(target))!.flatMap((b) => identityAt.get(b.address) ?? []), targetPort: target.port.targetPort })),
    ),
  };
  const policy = trafficPolicyOf(t, s);
  if (policy !== undefined) frontend.traffic = trafficOf(policy);
  // Every backend a request may reach (identity and target port), withdrawn ones too: the callers' egress is held to all.
  const reach = [...resolvedAt.values()].flat().flatMap((b) => {
    const identity = identityAt.get(b.address);
    return identity === undefined ? [] : [{ identity: identity.numericId, port: b.port }];
  });
  return { frontend, backends, reach };
}

/** The routes naming this frontend (a parentRef with its port, or with none), by name: their rules concatenate in that order. */
const routesOf = (t: TenantIndex, s: ServiceRow, sp: ServicePort): HttpRouteRow[] =>
  [...t.httpRoutes.values()]
    .filter((r) => r.parentRefs.some((ref) => ref.name === s.name && (ref.port === undefined || ref.port === sp.port)))
    .sort((a, b) => compare(a.name, b.name));

/** Whether a backend's workload identity carries every label (a backend by address alone has none). */
const labelled = (identity: IdentityRow | undefined, labels: Readonly<Record<string, string>>): boolean => identity !== undefined && selects({ labels }, identity);

/**
 * The Gateway API's match precedence across every route of a frontend:
 * an Exact path before a prefix, a longer path before a shorter one, a
 * method before none, more header matches before fewer; ties keep route-name
 * then rule order. A rule with several matches takes part once per match
 * (same backends), one without matches as the prefix "/".
 */
function byPrecedence(rules: L7Frontend["rules"]): L7Frontend["rules"] {
  const entries = rules.flatMap((r) => (r.matches.length === 0 ? [{ ...r, matches: [] }] : r.matches.map((m) => ({ ...r, matches: [m] }))));
  const key = (r: L7Frontend["rules"][number]): number[] => {
    const m = r.matches[0];
    const path = m?.path ?? { type: "PathPrefix", value: "/" };
    return [path.type === "Exact" ? 0 : 1, -path.value.length, m?.method === undefined ? 1 : 0, -(m?.headers?.length ?? 0)];
  };
  const keyed = entries.map((r, at) => ({ r, k: [...key(r), at] }));
  keyed.sort((a, b) => {
    for (let i = 0; i < a.k.length; i++) if (a.k[i] !== b.k[i]) return a.k[i]! - b.k[i]!;
    return 0;
  });
  return keyed.map((x) => x.r);
}

const filledMatch = (m: HttpRouteMatch): L7Match => ({
  ...(m.path === undefined ? {} : { path: { type: m.path.type ?? "PathPrefix", value: m.path.value } }),
  ...(m.headers === undefined ? {} : { headers: m.headers.map((h) => ({ type: "Exact" as const, name: h.name, value: h.value })) }),
  ...(m.method === undefined ? {} : { method: m.method }),
});

/** A rule's timeouts, retry and header filters, as every backend of its refs carries them. */
function settingsOf(rule: HttpRouteRow["rules"][number]): Omit<L7Backend, "name" | "servers"> {
  const out: Omit<L7Backend, "name" | "servers"> = {};
  const request = durationMs(rule.timeouts?.request);
  const backendRequest = durationMs(rule.timeouts?.backendRequest);
  if (request !== undefined) out.requestTimeoutMs = request;
  if (backendRequest !== undefined) out.backendRequestTimeoutMs = backendRequest;
  if (rule.retry !== undefined) {
    out.retry = { attempts: rule.retry.attempts, on: [...(rule.retry.on ?? DEFAULT_RETRY_ON)], nonIdempotent: rule.retry.nonIdempotent ?? false };
  }
  const requestHeaders = mergeModifiers((rule.filters ?? []).flatMap((f) => (f.type === "RequestHeaderModifier" ? [f.requestHeaderModifier] : [])));
  const responseHeaders = mergeModifiers((rule.filters ?? []).flatMap((f) => (f.type === "ResponseHeaderModifier" ? [f.responseHeaderModifier] : [])));
  if (requestHeaders !== undefined) out.requestHeaders = requestHeaders;
  if (responseHeaders !== undefined) out.responseHeaders = responseHeaders;
  return out;
}

function mergeModifiers(list: readonly HttpHeaderModifier[]): L7HeaderModifier | undefined {
  if (list.length === 0) return undefined;
  const out: L7HeaderModifier = {};
  const set = list.flatMap((m) => (m.set ?? []).map((h) => ({ name: h.name, value: h.value })));
  const add = list.flatMap((m) => (m.add ?? []).map((h) => ({ name: h.name, value: h.value })));
  const remove = list.flatMap((m) => m.remove ?? []);
  if (set.length > 0) out.set = set;
  if (add.length > 0) out.add = add;
  if (remove.length > 0) out.remove = remove;
  return out;
}

/** Istio's outlier-detection defaults (DestinationRule), as TrafficPolicySpec documents them. */
const OUTLIER_DEFAULTS = { consecutive5xx: 5, interval: "10s", baseEjectionTime: "30s", maxEjectionPercent: 10 } as const;

/**
 * A trafficPolicy as the proxy takes it: only the parts the policy has, each
 * with its defaults filled in (burst: the rate). The API refuses a zero
 * duration; one stored past it takes the default, as 0 would eject forever
 * or never look again.
 */
export function trafficOf(p: TrafficPolicyRow): L7Traffic {
  const out: L7Traffic = { policy: p.name };
  const pool = p.connectionPool;
  if (pool?.maxConnections !== undefined) out.maxConnections = pool.maxConnections;
  if (pool?.maxPendingRequests !== undefined) out.maxPendingRequests = pool.maxPendingRequests;
  const o = p.outlierDetection;
  if (o !== undefined) {
    out.outlier = {
      consecutive5xx: o.consecutive5xx ?? OUTLIER_DEFAULTS.consecutive5xx,
      intervalMs: durationMs(o.interval) ?? durationMs(OUTLIER_DEFAULTS.interval)!,
      baseEjectionMs: durationMs(o.baseEjectionTime) ?? durationMs(OUTLIER_DEFAULTS.baseEjectionTime)!,
      maxEjectionPercent: o.maxEjectionPercent ?? OUTLIER_DEFAULTS.maxEjectionPercent,
    };
  }
  if (p.rateLimit !== undefined) out.rateLimit = { requestsPerSecond: p.rateLimit.requestsPerSecond, burst: p.rateLimit.burst ?? p.rateLimit.requestsPerSecond };
  return out;
}

const DURATION_PART = /(\d+)(ms|h|m|s)/g;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** A Gateway API duration ("1m30s", "500ms") in milliseconds; undefined when absent or zero (no timeout). */
export function durationMs(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  let ms = 0;
  for (const [, n, unit] of text.matchAll(DURATION_PART)) ms += Number(n) * UNIT_MS[unit!]!;
  return ms > 0 ? ms : undefined;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const lcm = (a: number, b: number): number => (a / gcd(a, b)) * b;

/**
 * HAProxy weights (0..256) in the ratio of the shares num[i]/den[i] (den
 * default 1): exact when the reduced integers fit, else scaled so the
 * largest is 256, and a non-zero share never rounds to 0.
 */
export function serverWeights(num: readonly number[], den: readonly number[] = num.map(() => 1)): number[] {
  if (num.length === 0) return [];
  const common = den.reduce((l, d) => (d > 0 ? lcm(l, d) : l), 1);
  if (Number.isSafeInteger(common) && num.every((n, i) => Number.isSafeInteger(n * (common / (den[i] || 1))))) {
    const whole = num.map((n, i) => (den[i] === 0 ? 0 : n * (common / den[i]!)));
    const g = whole.reduce(gcd, 0);
    if (g === 0) return whole.map(() => 0);
    const reduced = whole.map((w) => w / g);
    if (Math.max(...reduced) <= SERVER_WEIGHT_MAX) return reduced;
  }
  const share = num.map((n, i) => (den[i] === 0 ? 0 : n / den[i]!));
  const max = Math.max(...share);
  if (max === 0) return share.map(() => 0);
  return share.map((x) => (x === 0 ? 0 : Math.max(1, Math.round((x / max) * SERVER_WEIGHT_MAX))));
}

/**
 * The frontend's authorization: every enforced ingress rule of every
 * enforced policy selecting one of the backends its requests may reach
 * (the service's own, and those of services its backend refs name) whose
 * ports cover that backend's target port over tcp. Rules without http
 * decide any request of their sources; identity peers become SPIFFE IDs
 * (no peers: any caller of the tenant; only CIDR peers: no caller, the rule
 * is left out). A request is decided before its backend is picked, so it
 * must pass the policies of every backend it might reach: the backends'
 * identities whose ingress the datapath decides by policy (the same test
 * as the default-deny marker) form `groups` (identities admitted by the
 * same allow entries share one), and a request some governed group admits
 * by no allow entry is refused. A deny entry of any of them refuses.
 */
function authorizationOf(t: TenantIndex, targets: readonly { identities: readonly IdentityRow[]; targetPort: number }[]): L7Frontend["authorization"] {
  const portsOf = new Map<IdentityRow, Set<number>>();
  for (const target of targets) {
    for (const i of target.identities) {
      let ports = portsOf.get(i);
      if (ports === undefined) portsOf.set(i, (ports = new Set()));
      ports.add(target.targetPort);
    }
  }
  const subjects = [...portsOf.keys()].sort((a, b) => a.numericId - b.numericId);
  const policies = [...t.policies.values()].filter((p) => subjects.some((i) => selects(p.subject, i))).sort((a, b) => compare(a.name, b.name));
  const entries: L7AuthorizationEntry[] = [];
  /** Per allow entry (by index), the subjects whose policy it is a rule of, on a target port it covers. */
  const admits = new Map<number, IdentityRow[]>();
  for (const p of policies) {
    if (p.mode === "audit") continue;
    (p.ingress ?? []).forEach((rule, i) => {
      if (rule.mode === "audit") return;
      const covered = subjects.filter((s) => selects(p.subject, s) && [...portsOf.get(s)!].some((port) => coversTcpPort(rule.ports, port)));
      if (covered.length === 0) return;
      const entry: L7AuthorizationEntry = { action: rule.action, policy: p.name, rule: i };
      if (rule.peers.length > 0) {
        const sources = sourcesOf(t, rule.peers);
        if (sources.length === 0) return;
        entry.sources = sources;
      }
      if (rule.http?.methods !== undefined) entry.methods = [...rule.http.methods];
      if (rule.http?.pathPrefixes !== undefined) entry.pathPrefixes = [...rule.http.pathPrefixes];
      const jwt = rule.http?.jwt;
      if (jwt !== undefined) {
        const trustDomain = jwt.trustDomain ?? t.row.trustDomain;
        // No trust domain to verify against: no token can satisfy the rule, so it matches nothing.
        if (trustDomain === undefined) return;
        entry.jwt = { trustDomain, audiences: [...jwt.audiences], claims: (jwt.claims ?? []).map((c) => ({ name: c.name, values: [...c.values] })) };
      }
      if (rule.action === "allow") admits.set(entries.length, covered);
      entries.push(entry);
    });
  }
  const governed = subjects.filter((s) =>
    enforcesDirection(
      t,
      policies.filter((p) => selects(p.subject, s)),
      "ingress",
    ),
  );
  // One group per distinct set of allow entries admitting for a governed subject.
  const groups: { subjects: string[]; allows: number[] }[] = [];
  const byAllows = new Map<string, number>();
  for (const s of governed) {
    const allows = [...admits].filter(([, covered]) => covered.includes(s)).map(([k]) => k);
    const key = allows.join(",");
    let g = byAllows.get(key);
    if (g === undefined) {
      byAllows.set(key, (g = groups.length));
      groups.push({ subjects: [], allows });
    }
    const id = spiffeIdOf(t, s);
    if (id !== undefined) groups[g]!.subjects.push(id);
  }
  for (const [k] of admits) entries[k]!.groups = groups.flatMap((g, gi) => (g.allows.includes(k) ? [gi] : []));
  return { governed: governed.length > 0, entries, groups: groups.map((g) => ({ subjects: g.subjects.sort(compare) })) };
}

const coversTcpPort = (ports: readonly PortSelector[], port: number): boolean =>
  ports.length === 0 || ports.some((p) => ((p.port ?? 0) === 0 || p.port === port) && (p.protocol === undefined || p.protocol === "any" || p.protocol === "tcp"));

function sourcesOf(t: TenantIndex, peers: readonly PeerSelector[]): string[] {
  const out = new Set<string>();
  for (const identity of t.identities.values()) {
    if (!peers.some((peer) => !("cidr" in peer) && selects(peer, identity))) continue;
    const id = spiffeIdOf(t, identity);
    if (id !== undefined) out.add(id);
  }
  return [...out].sort(compare);
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

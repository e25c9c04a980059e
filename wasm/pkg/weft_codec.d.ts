// SPDX-License-Identifier: Apache-2.0
/**
 * @weft/codec: the datapath ABI (bpf/include/weft_abi.h) compiled to wasm32.
 *
 * Every kernel map has a key type and a value type below; an entry is
 * `{ key, value }`. Encode many entries per call (encodeEntries) to get the
 * byte arrays bpf_map_update_batch wants (keys back to back, values back to
 * back); decode what bpf_map_lookup_batch returns with decodeEntries.
 * Addresses are dotted-quad strings and ports are host numbers: the codec
 * writes network byte order where the ABI says so. Invalid input throws an
 * Error naming the map, the entry index, the member and the allowed range;
 * nothing is truncated silently.
 */

export type Direction = "ingress" | "egress";
export type PolicyAction = "allow" | "deny" | "default-deny";
export type Hook = "ingress" | "egress" | "sock" | "transport" | "l7";
export type Verdict = "pass" | "drop";
export type Reason =
  | "policy-allow"
  | "policy-deny"
  | "default-deny"
  | "unselected"
  | "cross-tenant"
  | "unknown-endpoint"
  | "not-ip"
  | "ipv6"
  | "malformed"
  | "invalid-entry"
  | "lb-translated"
  | "lb-no-backend"
  | "lb-reversed"
  | "ct-reply"
  | "audit"
  | "mtls-required"
  | "transport-down"
  | "steered"
  | "transport-carried"
  | "transport-refused"
  | "l7-steered"
  | "proxy-down"
  | "http-forwarded"
  | "http-refused";

/** ipcache key: an IPv4 prefix, "198.18.0.0/15"; a bare address means /32. Host bits must be zero. */
export interface IpcacheKey { prefix: string }
/** Value of ipcache and endpoint: identity (>= 1) and tenant (0 = none: reserved identities, world). */
export interface Identity { identity: number; tenant: number }
/** endpoint key: the address of a workload on this node. */
export interface EndpointKey { address: string }
/** policy key; 0 in remoteIdentity, port or protocol is a wildcard. localIdentity >= 1. */
export interface PolicyKey {
  localIdentity: number;
  remoteIdentity: number;
  /** destination port 0..65535, 0 = any */
  port: number;
  /** IP protocol number 0..255 (see `protocols`), 0 = any */
  protocol: number;
  direction: Direction;
}
/**
 * policy, audit and steer value. mtls: the rule asks for the node-to-node
 * transport (WEFT_POLICY_F_MTLS); absent when not set, never in audit entries.
 */
export interface PolicyValue { action: PolicyAction; ruleId: number; mtls?: true }
/** svc key: a service frontend. protocol is 6 (TCP) or 17 (UDP); port 1..65535. */
export interface SvcKey { vip: string; port: number; protocol: number }
/** svc value: the lookup table in use (lb_slot entries tableId/0..slots-1); slots 0 = refuse connections. */
export interface SvcValue { tableId: number; slots: number }
/** l7 value: what the node's L7 proxy reads at this frontend; HTTP is the one thing it reads today. */
export interface L7Value { http: true }
export interface LbSlotKey { tableId: number; slot: number }
export interface LbSlotValue { backendId: number }
export interface BackendKey { backendId: number }
export interface BackendValue { address: string; port: number }
export interface SockRevKey { cookie: bigint; address: string; port: number }
export interface SockRevValue { vip: string; port: number }
/**
 * ct key (written by the tc program, read by operators and tests): the tuple
 * a reply carries, seen from the guarded workload; `direction` is the
 * replies' direction. Ports are the echo id for ICMP echo, else 0 without ports.
 */
export interface CtKey { local: string; remote: string; localPort: number; remotePort: number; protocol: number; direction: Direction }
/** ct value: the identities when the flow opened; a reply needs both unchanged. */
export interface CtValue { localIdentity: number; remoteIdentity: number }
/** A metrics slot. Decoding yields reason "none" for the never-counted slots of code 0; encoding refuses it. */
export interface MetricsKey { hook: Hook; reason: Reason | "none" }
export interface MetricsValue { packets: bigint; bytes: bigint }
/** local_veth value (written by the agent): the host-side veth a workload address sits behind. */
export interface LocalVeth { ifindex: number }
/** sock_cfg key: the map holds one entry, index 0. */
export interface SockCfgKey { index: 0 }
/**
 * sock_cfg value (written by the agent): the host's network namespace cookie
 * (SO_NETNS_COOKIE; 0n = unknown, nothing is rewritten) and whether the socket
 * LB rewrites connections of the host's namespace too (--lb-host-traffic).
 */
export interface SockCfg { hostNetnsCookie: bigint; lbHostTraffic: boolean }
/** Key of the one-entry arrays (flow_cfg, flow_stats). */
export interface IndexZeroKey { index: 0 }
/**
 * flow_cfg value (written by the agent): the interval between two events of
 * one CPU, 1e9 / events per second (0n = no events, the default; else at
 * least FLOW_INTERVAL_MIN), the bucket's burst, and whether passed new
 * connections are emitted too (drops and audits always are).
 */
export interface FlowCfg { intervalNs: bigint; burst: number; allowed: boolean }
/**
 * flow_stats value, per CPU: events written, events lost to the bucket or a
 * full ring, and the token bucket's own state (nanoseconds of credit).
 */
export interface FlowStats { emitted: bigint; rateLimited: bigint; ringFull: bigint; stampNs: bigint; creditNs: bigint }
/** One endpoint of a flow event: wire address and port, datapath identity and tenant (0 = unknown). */
export interface FlowEndpoint { address: string; port: number; identity: number; tenant: number }
/** One record of the flow ring (struct weft_flow_event). */
export interface FlowEvent {
  /** CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) */
  timeNs: bigint;
  /** socket cookie for the sock hook; 0n from tc */
  cookie: bigint;
  source: FlowEndpoint;
  destination: FlowEndpoint;
  protocol: number;
  hook: Hook;
  reason: Reason;
  verdict: Verdict;
  /** the policy (or audit) entry's rule; 0 = none */
  ruleId: number;
  /** sock hook: the service address the application asked for */
  originalDestination: { address: string; port: number } | null;
  ifindex: number;
  length: number;
}

/** Key and value type of each map, by map id. */
export interface MapTypes {
  ipcache: { key: IpcacheKey; value: Identity };
  endpoint: { key: EndpointKey; value: Identity };
  policy: { key: PolicyKey; value: PolicyValue };
  svc: { key: SvcKey; value: SvcValue };
  lb_slot: { key: LbSlotKey; value: LbSlotValue };
  backend: { key: BackendKey; value: BackendValue };
  sock_rev: { key: SockRevKey; value: SockRevValue };
  ct: { key: CtKey; value: CtValue };
  metrics: { key: MetricsKey; value: MetricsValue };
  local_veth: { key: EndpointKey; value: LocalVeth };
  sock_cfg: { key: SockCfgKey; value: SockCfg };
  audit: { key: PolicyKey; value: PolicyValue };
  /** which connections the node's transport carries (weft_abi.h, weft_steer) */
  steer: { key: PolicyKey; value: PolicyValue };
  /** the service frontends the node's L7 proxy takes (weft_abi.h, weft_l7), which then have no svc entry */
  l7: { key: SvcKey; value: L7Value };
  flow_cfg: { key: IndexZeroKey; value: FlowCfg };
  flow_stats: { key: IndexZeroKey; value: FlowStats };
}
/** Maps with entries the codec encodes and decodes. */
export type MapId = keyof MapTypes;
/** Ring buffers: no keys or values, read as events (decodeFlowEvents). */
export type RingId = "flow_ring";
export type KeyOf<M extends MapId> = MapTypes[M]["key"];
export type ValueOf<M extends MapId> = MapTypes[M]["value"];
export interface Entry<M extends MapId> { key: KeyOf<M>; value: ValueOf<M> }

export interface MapSpec {
  /** position in the ABI's map table */
  index: number;
  id: MapId | RingId;
  /** kernel map name and pin file name, at most 15 characters */
  name: string;
  kind: "lpm_trie" | "hash" | "lru_hash" | "percpu_array" | "array" | "ringbuf";
  /** null for a ring buffer */
  keyStruct: string | null;
  valueStruct: string | null;
  /** 0 for a ring buffer, whose maxEntries is its size in bytes */
  keySize: number;
  /** size of one value; per-CPU maps return one such value per possible CPU */
  valueSize: number;
  maxEntries: number;
}
export interface FieldLayout {
  name: string;
  offset: number;
  size: number;
  kind: "pad" | "u8" | "u16" | "u32" | "be16" | "be32" | "u64";
  min: number;
  max: number;
}
export interface StructLayout { name: string; size: number; fields: readonly FieldLayout[] }

/** Every map of the ABI, by id. */
export const maps: Readonly<Record<MapId | RingId, MapSpec>>;
/** Kernel map names by id: the only place TypeScript gets a map name from. */
export const mapNames: Readonly<Record<MapId | RingId, string>>;
/** Size and member offsets of every ABI struct as the compiler laid it out, keyed "struct weft_policy_key". */
export const layouts: Readonly<Record<string, StructLayout>>;
/** The numeric constants of weft_abi.h without their WEFT_ prefix, read from the wasm. */
export interface AbiConstants {
  IDENTITY_ANY: number;
  IDENTITY_HOST: number;
  IDENTITY_WORLD: number;
  IDENTITY_UNMANAGED: number;
  IDENTITY_HEALTH: number;
  IDENTITY_RESERVED_MAX: number;
  IDENTITY_FIRST: number;
  TENANT_NONE: number;
  DIR_INGRESS: number;
  DIR_EGRESS: number;
  HOOK_INGRESS: number;
  HOOK_EGRESS: number;
  HOOK_SOCK: number;
  HOOK_TRANSPORT: number;
  HOOK_COUNT: number;
  ACTION_ALLOW: number;
  ACTION_DENY: number;
  ACTION_DEFAULT_DENY: number;
  VERDICT_PASS: number;
  VERDICT_DROP: number;
  REASON_POLICY_ALLOW: number;
  REASON_POLICY_DENY: number;
  REASON_DEFAULT_DENY: number;
  REASON_UNSELECTED: number;
  REASON_CROSS_TENANT: number;
  REASON_UNKNOWN_ENDPOINT: number;
  REASON_NOT_IP: number;
  REASON_IPV6: number;
  REASON_MALFORMED: number;
  REASON_INVALID_ENTRY: number;
  REASON_LB_TRANSLATED: number;
  REASON_LB_NO_BACKEND: number;
  REASON_LB_REVERSED: number;
  REASON_CT_REPLY: number;
  REASON_AUDIT: number;
  REASON_MTLS_REQUIRED: number;
  REASON_TRANSPORT_DOWN: number;
  REASON_STEERED: number;
  REASON_TRANSPORT_CARRIED: number;
  REASON_TRANSPORT_REFUSED: number;
  REASON_L7_STEERED: number;
  REASON_PROXY_DOWN: number;
  REASON_HTTP_FORWARDED: number;
  REASON_HTTP_REFUSED: number;
  L7_F_HTTP: number;
  L7_PROXY_PORT: number;
  MARK_PROXY: number;
  IDENTITY_PROXY: number;
  HOOK_L7: number;
  REASON_COUNT: number;
  POLICY_F_MTLS: number;
  TRANSPORT_OUTBOUND_ADDR: number;
  TRANSPORT_OUTBOUND_PORT: number;
  TRANSPORT_INBOUND_PORT: number;
  MARK_TRANSPORT: number;
  MARK_TO_TRANSPORT: number;
  TRANSPORT_TABLE: number;
  TRANSPORT_RULE_PRIORITY: number;
  PREFIX_MAX: number;
  PORT_MAX: number;
  LB_WEIGHT_MAX: number;
  LB_TABLE_MAX: number;
  LB_BACKENDS_MAX: number;
  METRICS_MAX: number;
  FLOW_RING_BYTES: number;
  FLOW_INTERVAL_MIN: number;
  FLOW_BURST_MAX: number;
  FLOW_F_ALLOWED: number;
}
export const constants: Readonly<AbiConstants>;
export const protocols: Readonly<{ icmp: 1; tcp: 6; udp: 17; sctp: 132 }>;
/** Reason name -> the code the datapath counts under. */
export const reasons: Readonly<Record<Reason, number>>;

export function encodeEntries<M extends MapId>(
  map: M,
  entries: readonly Entry<M>[],
): { keys: Uint8Array; values: Uint8Array; count: number };
export function encodeKeys<M extends MapId>(map: M, keys: readonly KeyOf<M>[]): Uint8Array;
export function encodeValues<M extends MapId>(map: M, values: readonly ValueOf<M>[]): Uint8Array;
export function decodeEntries<M extends MapId>(map: M, keys: Uint8Array, values: Uint8Array): Entry<M>[];
export function decodeKeys<M extends MapId>(map: M, keys: Uint8Array): KeyOf<M>[];
export function decodeValues<M extends MapId>(map: M, values: Uint8Array): ValueOf<M>[];
export function encodeKey<M extends MapId>(map: M, key: KeyOf<M>): Uint8Array;
export function encodeValue<M extends MapId>(map: M, value: ValueOf<M>): Uint8Array;
export function decodeKey<M extends MapId>(map: M, bytes: Uint8Array): KeyOf<M>;
export function decodeValue<M extends MapId>(map: M, bytes: Uint8Array): ValueOf<M>;

export function parseIPv4(text: string, what?: string): number;
export function formatIPv4(address: number): string;

/** Index of a metrics slot; metricsSlot is its inverse ("none" for the unused reason 0). */
export function metricsIndex(hook: Hook, reason: Reason): number;
/**
 * Flow events as the ring would hold them (struct weft_flow_event, back to
 * back), for events the agent makes itself (hook "transport"); the inverse
 * of decodeFlowEvents. `verdict` is not written: the reason implies it.
 * Throws naming the event and member on anything out of range.
 */
export function encodeFlowEvents(events: readonly FlowEvent[]): Uint8Array;
export function metricsSlot(index: number): { hook: Hook; reason: Reason | "none"; verdict: Verdict };
export function verdictOf(reason: Reason): Verdict;
/** Sum of the per-CPU copies of one metrics entry (decodeValues("metrics", bytes) of one lookup). */
export function sumPerCpu(values: readonly MetricsValue[]): MetricsValue;

/** Size in bytes of one flow event as the ring buffer holds it. */
export const flowEventSize: number;
/** Decodes flow events laid back to back (flowEventSize bytes each), e.g. ring-buffer samples concatenated. */
export function decodeFlowEvents(bytes: Uint8Array): FlowEvent[];

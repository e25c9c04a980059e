/**
 * The flows contract (issue #17): what a node's agent uploads, and what
 * tenants and the operator read back. The upload's shape is fixed by the
 * agent (nodeagent/src/flows/): numbers as the datapath has them; the reads
 * carry names, resolved when the batch arrived.
 */
import { Type, type Static } from "@sinclair/typebox";
import { constants, reasons, type Hook as HookName, type Reason } from "@weft/codec";
import { Name } from "../specs.ts";

/** Most aggregates and sampled flows one batch may carry: the work of a batch is bounded by them. */
export const MAX_AGGREGATES_PER_BATCH = 5000;
export const MAX_FLOWS_PER_BATCH = 2000;

const U32 = Type.Integer({ minimum: 0, maximum: 4_294_967_295 });
const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const ProtocolNumber = Type.Integer({ minimum: 0, maximum: 255, description: "IP protocol number (6 tcp, 17 udp, 1 icmp)" });
const Ipv4 = Type.String({ format: "ipv4" });
const Time = Type.String({ format: "date-time", maxLength: 40 });
const Count = (minimum: number) => Type.Integer({ minimum, maximum: Number.MAX_SAFE_INTEGER });

/**
 * A string from a fixed list, as one JSON Schema `enum`: a batch holds
 * thousands of these, and a union of literals makes ajv try (and record an
 * error for) each one in turn, which costs seconds per batch once V8 has
 * deoptimized the validator.
 */
const StringEnum = <T extends string>(values: readonly T[], options: { description?: string } = {}) =>
  Type.Unsafe<T>({ type: "string", enum: [...values], ...options });

export const FLOW_VERDICTS = ["forwarded", "dropped", "audit", "translated"] as const;
export type FlowVerdict = (typeof FLOW_VERDICTS)[number];
export const Verdict = StringEnum(FLOW_VERDICTS);

/** The datapath's reason names, from the codec (the ABI's one list). */
export const REASON_NAMES = Object.keys(reasons) as Reason[];
export const ReasonName = StringEnum(REASON_NAMES, { description: "A reason of the datapath's ABI" });

/** The datapath's hook names, from the codec too: HOOK_SOCK is "sock", HOOK_TRANSPORT "transport". */
export const HOOKS = Object.keys(constants)
  .filter((n) => n.startsWith("HOOK_") && n !== "HOOK_COUNT")
  .map((n) => n.slice("HOOK_".length).toLowerCase() as HookName);
export const Hook = StringEnum(HOOKS);

export const UploadedAggregate = Type.Object(
  {
    start: Time,
    end: Time,
    srcIdentity: U32,
    srcTenant: U32,
    dstIdentity: U32,
    dstTenant: U32,
    dstPort: Port,
    protocol: ProtocolNumber,
    verdict: Verdict,
    reason: ReasonName,
    ruleId: U32,
    count: Count(1),
    bytes: Count(0),
  },
  { additionalProperties: false },
);
export type UploadedAggregate = Static<typeof UploadedAggregate>;

const UploadedEndpoint = Type.Object(
  { address: Ipv4, port: Port, identity: U32, tenant: U32 },
  { additionalProperties: false },
);
export type UploadedEndpoint = Static<typeof UploadedEndpoint>;

export const UploadedFlow = Type.Object(
  {
    time: Time,
    hook: Hook,
    verdict: Verdict,
    reason: ReasonName,
    ruleId: U32,
    protocol: ProtocolNumber,
    src: UploadedEndpoint,
    dst: UploadedEndpoint,
    originalDst: Type.Optional(Type.Object({ address: Ipv4, port: Port }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type UploadedFlow = Static<typeof UploadedFlow>;

export const FlowBatch = Type.Object(
  {
    batchId: Type.String({ format: "uuid", description: "Chosen by the agent; a retried batch is stored once" }),
    lost: Type.Object(
      {
        kernel: Count(0),
        agent: Count(0),
      },
      { additionalProperties: false, description: "Events lost since the previous batch: in the kernel (rate limit, ring full) and in the agent (buffer full)" },
    ),
    aggregates: Type.Array(UploadedAggregate, { maxItems: MAX_AGGREGATES_PER_BATCH }),
    flows: Type.Array(UploadedFlow, { maxItems: MAX_FLOWS_PER_BATCH }),
  },
  { additionalProperties: false },
);
export type FlowBatch = Static<typeof FlowBatch>;

export const FlowBatchAccepted = Type.Object({
  duplicate: Type.Boolean({ description: "true: this batch id was stored before, nothing was stored now" }),
  flows: Type.Integer({ description: "Sampled flows stored" }),
  aggregates: Type.Integer({ description: "Aggregates stored" }),
});
export type FlowBatchAccepted = Static<typeof FlowBatchAccepted>;

// What readers see.

/** What the other side of a flow is when it is not a tenant's workload, or not the reader's to know. */
export const RESERVED_NAMES = ["host", "world", "unmanaged", "health", "proxy", "reserved", "unknown", "cidr", "other-tenant"] as const;
export const Reserved = StringEnum(RESERVED_NAMES, {
  description:
    "Only for a side that is no workload of a tenant the reader may see: proxy is a node's L7 proxy (its proxy address) reaching a backend; other-tenant is another tenant's workload, redacted",
});

const NullableName = Type.Union([Name, Type.Null()]);

/** One side of a flow or an edge, as one reader may see it. */
export const FlowPeerView = Type.Object(
  {
    identity: NullableName,
    tenant: NullableName,
    reserved: Type.Optional(Reserved),
    cidr: Type.Optional(Type.String({ format: "ipv4-prefix", description: "For reserved: cidr, the policy CIDR the address fell in" })),
  },
  { additionalProperties: false },
);
export type FlowPeerView = Static<typeof FlowPeerView>;

export const FlowEndpointView = Type.Object(
  {
    address: Ipv4,
    port: Port,
    ...FlowPeerView.properties,
  },
  { additionalProperties: false },
);
export type FlowEndpointView = Static<typeof FlowEndpointView>;

export const FlowOriginalDestinationView = Type.Object(
  { address: Ipv4, port: Port, service: NullableName },
  { additionalProperties: false, description: "What a connect() asked for (sock hook): a service's VIP before translation" },
);
export type FlowOriginalDestinationView = Static<typeof FlowOriginalDestinationView>;

export const FlowPolicyView = Type.Object(
  {
    name: Name,
    rule: Type.Integer({ minimum: 0, description: "Index among the policy's rules of that direction" }),
    direction: Type.Union([Type.Literal("ingress"), Type.Literal("egress")]),
    mode: Type.Union([Type.Literal("enforce"), Type.Literal("audit")]),
  },
  { additionalProperties: false },
);
export type FlowPolicyView = Static<typeof FlowPolicyView>;

export const FlowProtocol = Type.String({ description: "tcp, udp, icmp, or the IP protocol number" });

export const Flow = Type.Object(
  {
    id: Type.String(),
    time: Time,
    node: Name,
    hook: Hook,
    verdict: Verdict,
    reason: ReasonName,
    protocol: FlowProtocol,
    source: FlowEndpointView,
    destination: FlowEndpointView,
    originalDestination: Type.Optional(FlowOriginalDestinationView),
    policy: Type.Union([FlowPolicyView, Type.Null()], { description: "The rule that decided; null: no rule (default deny, unselected)" }),
  },
  { additionalProperties: false },
);
export type Flow = Static<typeof Flow>;

export const VerdictCounts = Type.Object(Object.fromEntries(FLOW_VERDICTS.map((v) => [v, Type.Integer({ minimum: 0 })])) as Record<FlowVerdict, ReturnType<typeof Type.Integer>>, {
  additionalProperties: false,
});

export const FlowEdge = Type.Object(
  {
    source: FlowPeerView,
    destination: FlowPeerView,
    port: Port,
    protocol: FlowProtocol,
    counts: VerdictCounts,
    bytes: Type.Integer({ minimum: 0 }),
    lastSeen: Time,
  },
  { additionalProperties: false },
);
export type FlowEdge = Static<typeof FlowEdge>;

const PROTOCOL_NAMES: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp" };
export const protocolName = (n: number): string => PROTOCOL_NAMES[n] ?? String(n);

import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { HealthCheck, Labels, Name, ReportedHealth, ReportedL7, ReportedTransport, Revision, UnresolvedWorkload, Zone } from "../../mesh/specs.ts";

export const DEFAULT_JOIN_TOKEN_TTL_SECONDS = 600;

export const NodeParams = Type.Object({ node: Name });

export const NewJoinToken = Type.Object(
  {
    ttlSeconds: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 86_400, default: DEFAULT_JOIN_TOKEN_TTL_SECONDS, description: "1 s to 1 day; default 10 minutes" }),
    ),
    labels: Type.Optional({
      ...Labels,
      description:
        "The labels of the node this token registers (which identities' nodeSelector it matches); the registering party cannot choose others. Default: none",
    }),
    name: Type.Optional({ ...Name, description: "The only name the node may register under; default: any" }),
    zone: Type.Optional({ ...Zone, description: "The only zone the node may register in; default: any" }),
  },
  { additionalProperties: false },
);
export type NewJoinToken = Static<typeof NewJoinToken>;

export const JoinToken = Type.Object(
  {
    id: Type.String({ format: "uuid" }),
    token: Type.Optional(Type.String({ description: "One-time; shown only in this response, absent on a dry run" })),
    expiresAt: Timestamp,
    labels: { ...Labels, description: "The labels the node registered with this token gets" },
    name: Type.Union([Name, Type.Null()], { description: "The name the node must register under; null: any" }),
    zone: Type.Union([Type.String(), Type.Null()], { description: "The zone the node must register in; null: any" }),
  },
  { title: "JoinToken" },
);

const Hash = Type.String({ minLength: 1, maxLength: 128 });

/** The node's L7 proxy as its agent last reported it, against the document the API would serve it now. */
export const NodeL7 = Type.Object(
  {
    ...ReportedL7.properties,
    converged: Type.Boolean({ description: "The reported appliedEtag is the ETag of the node's L7 document now (GET /v1/nodes/{node}/l7)" }),
  },
  { additionalProperties: false, title: "NodeL7" },
);

export const Node = Type.Object(
  {
    name: Name,
    zone: Type.String(),
    labels: Labels,
    podCidr: Type.Union([Type.String({ description: "e.g. 10.0.3.0/24" }), Type.Null()], {
      description:
        "The node's block of WEFT_POD_CIDR: its workloads' addresses must lie inside it. Assigned at registration; null only for a node registered before blocks existed, until its first workload write",
    }),
    createdAt: Timestamp,
    desired: Type.Union([Type.Object({ revision: Revision, hash: Hash }), Type.Null()], {
      description: "What the compiler wants on the node now; null while it cannot say (no datapath for this node)",
    }),
    applied: Type.Union([Type.Object({ revision: Revision, hash: Hash, at: Timestamp }), Type.Null()], {
      description: "What the node last reported as applied; null before its first status report",
    }),
    converged: Type.Boolean({ description: "The applied hash equals the desired hash" }),
    convergedSince: Type.Union([Timestamp, Type.Null()], {
      description: "When the node first reported the desired content; null while not converged",
    }),
    counters: Type.Record(Type.String(), Type.Integer()),
    errors: Type.Array(Type.String()),
    unresolved: Type.Array(UnresolvedWorkload, { description: "Local workloads the agent reported it could not attach; the node is not converged while any is listed" }),
    health: Type.Array(ReportedHealth, { description: "The probed workloads' health as the agent last reported it" }),
    reachable: Type.Boolean({
      description: "False once the agent has sent no status for WEFT_NODE_GRACE_SECONDS (default 15): backends on the node are then withdrawn from every LB table until it reports again",
    }),
    unreachableSince: Type.Union([Timestamp, Type.Null()], { description: "When the API marked the node unreachable; null while reachable" }),
    transport: Type.Union([ReportedTransport, Type.Null()], { description: "The node's transport as its agent last reported it; null: never reported" }),
    l7: Type.Union([NodeL7, Type.Null()], { description: "The node's L7 proxy as its agent last reported it (issue 21); null: never reported" }),
    failingOpen: Type.Array(Type.String(), {
      description:
        "Services (tenant/service) whose every backend is withdrawn (unhealthy or on an unreachable node) as this node's tables see them: all of them keep their slots (fail open)",
    }),
  },
  { title: "Node" },
);
export type Node = Static<typeof Node>;

export const RegisteredNode = Type.Object(
  {
    node: Node,
    credential: Type.String({ description: "The node's bearer credential; shown only in this response. Keep it secret (mode 0600)." }),
  },
  { title: "RegisteredNode" },
);

/** A workload as the node's agent needs it: what to attach to and which SVIDs to fetch. */
export const NodeWorkload = Type.Object(
  {
    tenant: Name,
    name: Name,
    identity: Name,
    addresses: Type.Array(Type.String()),
    interface: Type.Optional(Type.String()),
    spiffeId: Type.String(),
    healthCheck: Type.Optional({ ...HealthCheck, description: "What the agent probes; absent: not probed" }),
  },
  { title: "NodeWorkload" },
);
export type NodeWorkload = Static<typeof NodeWorkload>;

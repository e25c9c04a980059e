import { Type, type Static } from "@sinclair/typebox";
import { Ipv4, Labels, Name, Timestamp } from "../../http/schemas.ts";

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

export const Service = Type.Object(
  {
    name: Name,
    vip: Type.String(),
    vipAllocated: Type.Boolean({ description: "True when the API chose the VIP" }),
    ports: Type.Array(ServicePort),
    backends: Backends,
    loadBalancing: LoadBalancing,
    topology: Topology,
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Service" },
);
export type Service = Static<typeof Service>;

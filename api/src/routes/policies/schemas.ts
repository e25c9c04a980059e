import { Type, type Static } from "@sinclair/typebox";
import { Ipv4Prefix, Name, Timestamp } from "../../http/schemas.ts";
import { Selector } from "../services/schemas.ts";

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

export const Rule = Type.Object(
  {
    peers: Type.Optional(Type.Array(Peer, { maxItems: 64, description: "Empty or absent: any peer" })),
    ports: Type.Optional(Type.Array(PortSelector, { maxItems: 64, description: "Empty or absent: any port and protocol" })),
    action: Type.Union([Type.Literal("allow"), Type.Literal("deny")], { description: "deny wins over allow" }),
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
  },
  { additionalProperties: false, description: "At most 256 rules over both directions" },
);
export type PolicySpec = Static<typeof PolicySpec>;

export const Policy = Type.Object(
  {
    name: Name,
    subject: Selector,
    ingress: Type.Union([Type.Array(Rule), Type.Null()]),
    egress: Type.Union([Type.Array(Rule), Type.Null()]),
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Policy" },
);
export type Policy = Static<typeof Policy>;

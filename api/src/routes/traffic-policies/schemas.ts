import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { Name, TrafficPolicySpec } from "../../mesh/specs.ts";

const { targetRef, connectionPool, outlierDetection, rateLimit } = TrafficPolicySpec.properties;

export const TrafficPolicy = Type.Object(
  {
    name: Name,
    targetRef,
    connectionPool,
    outlierDetection,
    rateLimit,
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "TrafficPolicy" },
);
export type TrafficPolicy = Static<typeof TrafficPolicy>;

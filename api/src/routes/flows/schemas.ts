import { Type, type Static } from "@sinclair/typebox";
import { Name } from "../../mesh/specs.ts";
import { FlowEdge, Hook, ReasonName, Verdict } from "../../mesh/flows/specs.ts";
import { ListQuery } from "../../http/schemas.ts";

const Time = Type.String({ format: "date-time", maxLength: 40 });
const AGE = /^([0-9]{1,6})(s|m|h|d)$/;
/** An RFC 3339 time, or an age before now as `weft flows --since 5m` sends it (s, m, h, d). */
const TimeOrAge = (description: string) =>
  Type.Union([Time, Type.String({ pattern: AGE.source })], { description: `${description}: an RFC 3339 time, or an age such as 30s, 5m, 2h, 7d` });

const AGE_UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** The instant a since/until value stands for, as an RFC 3339 time. */
export function instantOf(value: string, now = Date.now()): string {
  const age = AGE.exec(value);
  return age ? new Date(now - Number(age[1]) * AGE_UNIT_MS[age[2] as keyof typeof AGE_UNIT_MS]).toISOString() : value;
}

const filters = {
  identity: Type.Optional({ ...Name, description: "Flows with this identity on either side" }),
  sourceIdentity: Type.Optional(Name),
  destinationIdentity: Type.Optional(Name),
  service: Type.Optional({
    ...Name,
    description: "Flows whose original destination was this service's VIP (connections made to the service; the sock hook reports them), as named when the flow arrived",
  }),
  hook: Type.Optional({ ...Hook, description: "Flows one datapath hook reported: ingress, egress (tc), sock (socket LB), transport (the node's mTLS transport)" }),
  verdict: Type.Optional(Verdict),
  reason: Type.Optional(ReasonName),
  node: Type.Optional(Name),
  since: Type.Optional(TimeOrAge("Flows at or after this time")),
  until: Type.Optional(TimeOrAge("Flows before this time")),
  follow: Type.Optional(
    Type.Boolean({
      description:
        "Stream flows committed from now on as Server-Sent Events (event: flow, data: one flow) until the client leaves, with a comment every 15 s; limit and cursor do not apply",
    }),
  ),
};

export const TenantFlowQuery = Type.Object({ ...ListQuery.properties, ...filters }, { additionalProperties: false });
export type TenantFlowQuery = Static<typeof TenantFlowQuery>;

export const PlatformFlowQuery = Type.Object(
  { ...ListQuery.properties, ...filters, tenant: Type.Optional({ ...Name, description: "Flows with this tenant on either side" }) },
  { additionalProperties: false },
);
export type PlatformFlowQuery = Static<typeof PlatformFlowQuery>;

export const SummaryQuery = Type.Object({ since: filters.since, until: filters.until }, { additionalProperties: false });

export const FlowSummary = Type.Object({
  edges: Type.Array(FlowEdge),
  truncated: Type.Boolean({ description: "true: more edges than the answer holds; the latest are shown" }),
});

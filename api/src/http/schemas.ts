import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { Name } from "../mesh/specs.ts";

export { DNS_LABEL, DNS_LABEL_MESSAGE, FORMATS } from "@weft/formats";

export const TenantParams = Type.Object({ tenant: Name });
export type TenantParams = Static<typeof TenantParams>;

/** Query parameters, like bodies, refuse unknown fields: a misspelt `?dryrun=true` must not write for real. */
export const ListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    cursor: Type.Optional(Type.String({ maxLength: 512, description: "Opaque; from the previous page's nextCursor" })),
  },
  { additionalProperties: false },
);
export type ListQuery = Static<typeof ListQuery>;

export const DryRunQuery = Type.Object(
  { dryRun: Type.Optional(Type.Boolean({ description: "Validate everything, write nothing, answer what would happen" })) },
  { additionalProperties: false },
);

export const Page = <T extends TSchema>(item: T) =>
  Type.Object({
    items: Type.Array(item),
    nextCursor: Type.Union([Type.String(), Type.Null()], { description: "null on the last page" }),
  });

export const Timestamp = Type.String({ format: "date-time" });

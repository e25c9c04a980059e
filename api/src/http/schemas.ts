import { Type, type Static, type TSchema } from "@sinclair/typebox";

/** DNS label (RFC 1123): the shape of every resource name. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DNS_LABEL_MESSAGE =
  "must be a DNS label: 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit";

/** Custom ajv formats, with the message each failure should read as. */
export const FORMATS: Record<string, { pattern: RegExp; message: string }> = {
  "dns-label": { pattern: DNS_LABEL, message: DNS_LABEL_MESSAGE },
};

export const Name = Type.String({ format: "dns-label", minLength: 1, maxLength: 63, description: "A DNS label" });

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

// A Record's key schema becomes a pattern and loses its maxLength: propertyNames keeps the key bound.
export const Labels = Type.Record(Type.String({ maxLength: 63 }), Type.String({ maxLength: 253 }), {
  maxProperties: 64,
  propertyNames: { maxLength: 63 },
});

export const Timestamp = Type.String({ format: "date-time" });

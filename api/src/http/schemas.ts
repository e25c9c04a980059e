import { Type, type Static, type TSchema } from "@sinclair/typebox";

/** DNS label (RFC 1123): the shape of every resource name. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DNS_LABEL_MESSAGE =
  "must be a DNS label: 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit";

/** Custom ajv formats, with the message each failure should read as. */
const OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const IPV4 = `${OCTET}(\\.${OCTET}){3}`;

export const FORMATS: Record<string, { pattern: RegExp; message: string }> = {
  "dns-label": { pattern: DNS_LABEL, message: DNS_LABEL_MESSAGE },
  // Dotted quad without leading zeros: "010.0.0.1" reads as octal to some tools, so it is refused.
  ipv4: { pattern: new RegExp(`^${IPV4}$`), message: "must be an IPv4 address in dotted-quad form, e.g. 10.0.0.7" },
  "ipv4-prefix": {
    pattern: new RegExp(`^${IPV4}/(3[0-2]|[12]?[0-9])$`),
    message: "must be an IPv4 prefix, e.g. 10.0.0.0/8",
  },
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

export const Ipv4 = Type.String({ format: "ipv4", maxLength: 15, description: "IPv4 address, dotted quad" });
export const Ipv4Prefix = Type.String({ format: "ipv4-prefix", maxLength: 18, description: "IPv4 prefix, e.g. 10.0.0.0/8" });

import { Type, type Static } from "@sinclair/typebox";
import { SCOPES } from "../../auth/principal.ts";
import { Name, Timestamp } from "../../http/schemas.ts";

export const Scope = Type.Union(SCOPES.map((s) => Type.Literal(s)));

export const NewToken = Type.Object(
  {
    name: Name,
    scopes: Type.Array(Scope, { minItems: 1, maxItems: 3, uniqueItems: true }),
    ttlSeconds: Type.Optional(
      Type.Integer({ minimum: 60, maximum: 31_536_000, default: 2_592_000, description: "60 s to 1 year; default 30 days" }),
    ),
  },
  { additionalProperties: false },
);
export type NewToken = Static<typeof NewToken>;

export const TokenInfo = Type.Object(
  {
    id: Type.String({ format: "uuid" }),
    name: Type.String(),
    scopes: Type.Array(Scope),
    createdBy: Type.String(),
    createdAt: Timestamp,
    expiresAt: Timestamp,
  },
  { title: "TokenInfo" },
);

export const IssuedToken = Type.Composite(
  [
    TokenInfo,
    Type.Object({
      token: Type.Optional(Type.String({ description: "The bearer token; shown only in this response, absent on a dry run" })),
    }),
  ],
  { title: "IssuedToken" },
);

export const TokenParams = Type.Object({ tenant: Name, id: Type.String({ format: "uuid" }) });

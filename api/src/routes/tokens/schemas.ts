import { Type, type Static } from "@sinclair/typebox";
import { SCOPES } from "../../auth/principal.ts";
import { Timestamp } from "../../http/schemas.ts";
import { Name } from "../../mesh/specs.ts";

export const Scope = Type.Union(SCOPES.map((s) => Type.Literal(s)));

export const NewToken = Type.Object(
  {
    name: Name,
    scopes: Type.Array(Scope, { minItems: 1, maxItems: 3, uniqueItems: true }),
    ttlSeconds: Type.Optional(
      Type.Integer({
        minimum: 60,
        maximum: 31_536_000,
        // No schema default: an absent value must stay absent, to mean "30 days, or WEFT_TOKEN_MAX_TTL when shorter".
        description:
          "60 s to 1 year (at most WEFT_TOKEN_MAX_TTL: more answers 422); default 30 days, or WEFT_TOKEN_MAX_TTL when shorter. " +
          "A token minting another caps it at its own expiry: the answer's expiresAt is the real one",
      }),
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
    parentId: Type.Union([Type.String({ format: "uuid" }), Type.Null()], {
      description: "The token that minted this one (revoking it revokes this one); null when the operator minted it",
    }),
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

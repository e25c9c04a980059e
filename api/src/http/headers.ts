import { Type } from "@sinclair/typebox";

/** Conditional-request headers; declared on routes so they show in the OpenAPI document. */
export const PreconditionHeaders = Type.Object({
  "if-match": Type.Optional(Type.String({ description: "Write only if the current ETag matches" })),
  "if-none-match": Type.Optional(Type.String({ description: "`*` makes a PUT create-only; on GET, an ETag for a 304" })),
});

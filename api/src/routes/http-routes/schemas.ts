import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { HttpRouteSpec, Name } from "../../mesh/specs.ts";

export const HttpRoute = Type.Object(
  {
    name: Name,
    parentRefs: HttpRouteSpec.properties.parentRefs,
    rules: HttpRouteSpec.properties.rules,
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "HttpRoute" },
);
export type HttpRoute = Static<typeof HttpRoute>;

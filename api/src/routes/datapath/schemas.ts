import { Type } from "@sinclair/typebox";
import { DATAPATH_MAPS } from "../../compiler/index.ts";
import { Name } from "../../mesh/specs.ts";

export const DatapathParams = Type.Object({ node: Name });

export const DatapathQuery = Type.Object(
  {
    since: Type.Optional(
      Type.Integer({ minimum: 0, description: "A revision this API answered before: answer the delta from it (410 when no longer kept)" }),
    ),
    wait: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 60,
        description: "Long poll: hold up to this many seconds until the node's state differs from `since` or If-None-Match",
      }),
    ),
    format: Type.Optional(
      Type.Union([Type.Literal("json"), Type.Literal("binary")], { description: "binary: the codec's bytes (see the description)" }),
    ),
  },
  { additionalProperties: false },
);

/** Keys and values as the codec takes them: flat objects of numbers and strings. */
const Fields = Type.Unsafe<object>(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number()])));
const MapEntry = Type.Object({ key: Fields, value: Fields });
const perMap = <T extends ReturnType<typeof Type.Array>>(item: () => T) =>
  Type.Object(Object.fromEntries(DATAPATH_MAPS.map((m) => [m, item()])) as Record<(typeof DATAPATH_MAPS)[number], T>);

export const DatapathState = Type.Object(
  {
    revision: Type.Integer({ description: "The revision this state was first seen at; report it back as appliedRevision" }),
    hash: Type.String({ description: "Content hash; also the ETag" }),
    maps: perMap(() => Type.Array(MapEntry)),
  },
  { title: "DatapathState" },
);

export const DatapathDelta = Type.Object(
  {
    revision: Type.Integer(),
    hash: Type.String({ description: "The hash after applying the delta" }),
    upserts: perMap(() => Type.Array(MapEntry)),
    deletes: perMap(() => Type.Array(Fields)),
  },
  { title: "DatapathDelta" },
);

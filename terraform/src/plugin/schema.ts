// Framework schemas as the protocol's Schema message. Attributes with
// `nested` become Schema.Attribute.nested_type (nested attributes, protocol
// 6), not nested blocks; `type` is sent as cty's compact JSON.
import type { TfAttribute, TfSchema } from "../framework.ts";
import { attributeType, typeJson } from "./cty.ts";

export interface WireAttribute {
  name: string;
  type: Buffer;
  nested_type?: WireObject;
  description: string;
  description_kind: "PLAIN";
  required: boolean;
  optional: boolean;
  computed: boolean;
  sensitive: boolean;
  deprecated: boolean;
  write_only: boolean;
}
export interface WireObject {
  attributes: WireAttribute[];
  nesting: "SINGLE" | "LIST" | "SET" | "MAP";
}
export interface WireSchema {
  version: number;
  block: {
    version: number;
    attributes: WireAttribute[];
    description: string;
    description_kind: "PLAIN";
    deprecated: boolean;
  };
}

const NESTING = { single: "SINGLE", list: "LIST", set: "SET", map: "MAP" } as const;
const EMPTY = Buffer.alloc(0);

export function toWireAttribute(a: TfAttribute): WireAttribute {
  // attributeType checks that exactly one of type and nested is set.
  const t = attributeType(a);
  return {
    name: a.name,
    type: a.nested ? EMPTY : Buffer.from(JSON.stringify(typeJson(t))),
    ...(a.nested ? { nested_type: { attributes: a.nested.attributes.map(toWireAttribute), nesting: NESTING[a.nested.nesting] } } : {}),
    description: a.description ?? "",
    description_kind: "PLAIN",
    required: a.required ?? false,
    optional: a.optional ?? false,
    computed: a.computed ?? false,
    sensitive: a.sensitive ?? false,
    deprecated: false,
    write_only: false,
  };
}

export function toWireSchema(s: TfSchema): WireSchema {
  return {
    version: s.version,
    block: {
      version: s.version,
      attributes: s.attributes.map(toWireAttribute),
      description: s.description ?? "",
      description_kind: "PLAIN",
      deprecated: false,
    },
  };
}

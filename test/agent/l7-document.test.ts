// SPDX-License-Identifier: Apache-2.0
// The agent reads the node's L7 document with its own schema
// (nodeagent/src/l7/document.ts: the agent never imports api/). It must be
// the API's L7Document, and the OpenAPI component of that name once the
// API's route puts it in openapi/openapi.json: descriptions aside, the same
// JSON Schema. Also what the schema cannot say: names that collide, a
// backend no rule has, a SPIFFE ID that would break the callers map.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { L7Document as ApiL7Document } from "../../api/src/mesh/specs.ts";
import { checkL7Document, L7Document } from "../../nodeagent/src/l7/document.ts";
import { richDocument } from "./l7-fixtures.ts";

/**
 * A schema as JSON, without what only documents it; a `const` as the
 * one-value `enum` the OpenAPI document writes for it (OpenAPI 3.0 has no const).
 */
function shape(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(shape);
  if (schema === null || typeof schema !== "object") return schema;
  return Object.fromEntries(
    Object.entries(schema as Record<string, unknown>)
      .filter(([k]) => k !== "description" && k !== "title" && k !== "examples")
      .map(([k, v]) => (k === "const" ? ["enum", [v]] : [k, shape(v)])),
  );
}

const openapi = JSON.parse(readFileSync(new URL("../../openapi/openapi.json", import.meta.url), "utf8")) as { components: { schemas: Record<string, unknown> } };
const component = openapi.components.schemas["L7Document"];

describe("the agent's L7 document schema", () => {
  it("is the API's L7Document", () => {
    expect(shape(JSON.parse(JSON.stringify(L7Document)))).toEqual(shape(JSON.parse(JSON.stringify(ApiL7Document))));
  });

  it("is the OpenAPI component L7Document", () => {
    expect(component).toBeDefined();
    expect(shape(JSON.parse(JSON.stringify(L7Document)))).toEqual(shape(component));
  });

  it("takes a rich document", () => {
    expect(checkL7Document(richDocument())).toEqual(richDocument());
  });

  it("refuses what would break the rendered config, naming where", () => {
    const cases: [string, (d: ReturnType<typeof richDocument>) => void, RegExp][] = [
      ["a backend named twice", (d) => d.backends.push({ ...d.backends[0]! }), /^\/backends\/5\/name: backend b-1-0-0 is named twice/],
      ["a server named twice", (d) => d.backends[1]!.servers.push({ ...d.backends[1]!.servers[0]! }), /^\/backends\/1\/servers\/2\/name/],
      ["a rule's unknown backend", (d) => (d.frontends[0]!.rules[0]!.backends[0]!.backend = "nope"), /^\/frontends\/0\/rules\/0\/backends\/0\/backend: no backend nope/],
      ["an unknown default backend", (d) => (d.frontends[1]!.defaultBackend = "nope"), /^\/frontends\/1\/defaultBackend/],
      ["a frontend named twice", (d) => (d.frontends[1]!.name = d.frontends[0]!.name), /^\/frontends\/1\/name: frontend f-1-80 is named twice/],
      ["two frontends on one VIP and port", (d) => Object.assign(d.frontends[1]!, { vip: d.frontends[0]!.vip, port: d.frontends[0]!.port }), /taken by two frontends/],
      ["a backend two frontends name (each would bring its own trafficPolicy)", (d) => (d.frontends[1]!.defaultBackend = "d-1-80"), /^\/frontends\/1: backend d-1-80 is named by frontends f-1-80 and f-2-8080/],
      ["a caller listed twice", (d) => d.callers.push({ ...d.callers[0]! }), /^\/callers\/3\/address/],
      ["a caller's SPIFFE ID with a newline", (d) => (d.callers[0]!.spiffeId = "spiffe://acme.test/a\n10.0.0.1 acme|spiffe://acme.test/admin"), /^\/callers\/0\/spiffeId: not a SPIFFE ID/],
      ["a caller's SPIFFE ID with a quote", (d) => (d.callers[0]!.spiffeId = 'spiffe://acme.test/a"b'), /^\/callers\/0\/spiffeId/],
      ["a source SPIFFE ID with a space", (d) => (d.frontends[0]!.authorization.entries[0]!.sources = ["spiffe://acme.test/a b"]), /^\/frontends\/0\/authorization\/entries\/0\/sources\/0/],
      ["a name HAProxy would not take", (d) => (d.backends[0]!.name = "B 1"), /^\/backends\/0\/name/],
      ["an unknown field", (d) => Object.assign(d, { extra: 1 }), /./],
    ];
    for (const [what, change, error] of cases) {
      const d = richDocument();
      change(d);
      const checked = checkL7Document(d);
      expect(typeof checked, what).toBe("string");
      expect(checked, what).toMatch(error);
    }
  });
});

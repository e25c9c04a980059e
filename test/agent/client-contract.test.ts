// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's HTTP client against openapi/openapi.json. The client lists what
 * it sends and reads in one table (CLIENT_CONTRACT in
 * nodeagent/src/agent/client.ts) and derives its TypeScript types from it;
 * this test compares that table with the document, route by route and field
 * by field, so a change of the API's schema the agent would not survive (a
 * field removed, renamed, retyped, made optional or nullable; a route or
 * status gone; a map added to the datapath) fails here.
 *
 * The comparison is directional. An answer: every field the client needs
 * must be required in the document, with the same JSON type, and may be null
 * only where the client accepts null; fields the client does not read may
 * come and go. A request body: every field the client sends must be in the
 * document with the same type, and every field the document requires must be
 * one the client always sends.
 */
import { readFileSync } from "node:fs";
import { describe, expect, expectTypeOf, it } from "vitest";
import {
  CLIENT_CONTRACT,
  FLOWS_CONTRACT,
  L7_CONTRACT,
  type DatapathDeltaBody,
  type DatapathStateBody,
  type NodeAnswer,
  type NodeWorkload,
  type RegisterBody,
  type RegisteredNode,
  type RouteContract,
  type Shape,
  type StatusReport,
  type X509SvidAnswer,
} from "../../nodeagent/src/agent/client.ts";
import { MANAGED_MAPS } from "../../nodeagent/src/apply/index.ts";

interface Schema {
  $ref?: string;
  type?: string | string[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: boolean | Schema;
}

interface Parameter {
  $ref?: string;
  in: string;
  name: string;
}

interface Operation {
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: Schema }> };
  responses?: Record<string, { content?: Record<string, { schema?: Schema }> }>;
}

interface Document {
  paths: Record<string, Record<string, Operation>>;
  components?: Record<string, Record<string, unknown>>;
}

const DOCUMENT_PATH = new URL("../../openapi/openapi.json", import.meta.url);
const loadDocument = (): Document => JSON.parse(readFileSync(DOCUMENT_PATH, "utf8")) as Document;

type Direction = "answer" | "body";

function deref<T extends { $ref?: string }>(doc: Document, node: T): T {
  let n: T = node;
  for (let hops = 0; n.$ref !== undefined; hops++) {
    if (hops > 32 || !n.$ref.startsWith("#/")) throw new Error(`cannot resolve ${n.$ref}`);
    let at: unknown = doc;
    for (const part of n.$ref.slice(2).split("/")) at = (at as Record<string, unknown>)[part.replace(/~1/g, "/").replace(/~0/g, "~")];
    if (at === undefined) throw new Error(`cannot resolve ${n.$ref}`);
    n = at as T;
  }
  return n;
}

/** A schema as the list of its alternatives, one JSON type each (anyOf/oneOf flattened, type arrays split). */
function alternatives(doc: Document, schema: Schema): Schema[] {
  const s = deref(doc, schema);
  const union = s.anyOf ?? s.oneOf;
  if (union) return union.flatMap((a) => alternatives(doc, a));
  if (Array.isArray(s.type)) return s.type.map((type) => ({ ...s, type }));
  return [s];
}

function compare(doc: Document, shape: Shape, schema: Schema, at: string, dir: Direction, out: string[]): void {
  const alts = alternatives(doc, schema);
  const documentNull = alts.some((a) => a.type === "null");
  const values = alts.filter((a) => a.type !== "null");
  if (dir === "answer" && documentNull && !shape.nullable) out.push(`${at}: the document allows null, the client does not accept it`);
  if (dir === "body" && shape.nullable && !documentNull) out.push(`${at}: the client may send null, the document does not allow it`);
  if (values.length === 0) {
    out.push(`${at}: the document allows only null`);
    return;
  }
  if (dir === "answer") {
    // The API may send any alternative: the client must read each.
    values.forEach((alt, i) => compareOne(doc, shape, alt, values.length > 1 ? `${at} (alternative ${i + 1})` : at, dir, out));
    return;
  }
  // What the client sends must be one of the alternatives.
  const tries = values.map((alt) => {
    const o: string[] = [];
    compareOne(doc, shape, alt, at, dir, o);
    return o;
  });
  if (!tries.some((t) => t.length === 0)) out.push(...tries.reduce((a, b) => (b.length < a.length ? b : a)));
}

function compareOne(doc: Document, shape: Shape, schema: Schema, at: string, dir: Direction, out: string[]): void {
  const t = schema.type;
  const sameType = t === shape.type || (dir === "answer" && shape.type === "number" && t === "integer") || (dir === "body" && shape.type === "integer" && t === "number");
  if (!sameType) {
    out.push(`${at}: the client ${dir === "answer" ? "reads" : "sends"} ${shape.type}, the document says ${t === undefined ? "any type" : String(t)}`);
    return;
  }
  if (shape.type === "array" && shape.items) {
    if (!schema.items) out.push(`${at}: the document does not describe its items`);
    else compare(doc, shape.items, schema.items, `${at}[]`, dir, out);
  }
  if (shape.type !== "object") return;
  if (shape.fields) {
    const props = schema.properties ?? {};
    const required = new Set(schema.required ?? []);
    for (const [name, field] of Object.entries(shape.fields)) {
      const where = `${at}.${name}`;
      const p = props[name];
      if (!p) {
        out.push(`${where}: not in the document`);
        continue;
      }
      if (dir === "answer" && !field.optional && !required.has(name)) out.push(`${where}: the client needs it, the document does not require it`);
      compare(doc, field, p, where, dir, out);
    }
    if (dir === "body") {
      for (const name of required) {
        const field = shape.fields[name];
        if (!field || field.optional) out.push(`${at}.${name}: the document requires it, the client ${field ? "may leave it out" : "does not send it"}`);
      }
    }
    if (shape.closed) {
      for (const name of Object.keys(props)) if (!(name in shape.fields)) out.push(`${at}.${name}: in the document, and the client refuses properties it does not know`);
    }
  }
  if (shape.values) {
    const ap = schema.additionalProperties;
    if (ap === undefined || typeof ap === "boolean") out.push(`${at}: the document does not describe its values`);
    else compare(doc, shape.values, ap, `${at}{}`, dir, out);
  }
}

/** Everything in the route's table entry that the document contradicts; [] when none. */
function routeProblems(doc: Document, route: RouteContract): string[] {
  const name = `${route.method.toUpperCase()} ${route.path}`;
  const op = doc.paths[route.path]?.[route.method];
  if (!op) return [`${name}: not in the document`];
  const out: string[] = [];
  for (const status of route.statuses) if (!op.responses?.[String(status)]) out.push(`${name}: the document has no ${status} answer`);
  const params = (op.parameters ?? []).map((p) => deref(doc, p));
  for (const q of route.query ?? []) if (!params.some((p) => p.in === "query" && p.name === q)) out.push(`${name}: the document has no query parameter ${q}`);
  for (const h of route.headers ?? []) if (!params.some((p) => p.in === "header" && p.name.toLowerCase() === h.toLowerCase())) out.push(`${name}: the document has no header ${h}`);

  const bodySchema = op.requestBody?.content?.["application/json"]?.schema;
  if (route.body) {
    if (!bodySchema) out.push(`${name}: the document takes no JSON body`);
    else compare(doc, route.body, bodySchema, `${name} body`, "body", out);
  } else if (op.requestBody?.required) {
    out.push(`${name}: the document requires a body, the client sends none`);
  }

  if (route.answer) {
    const status = route.statuses[0]!;
    const media = route.media ?? "application/json";
    const answerSchema = op.responses?.[String(status)]?.content?.[media]?.schema;
    const at = `${name} ${status}`;
    if (!answerSchema) {
      out.push(`${at}: the document has no ${media} answer`);
    } else if (!Array.isArray(route.answer)) {
      compare(doc, route.answer as Shape, answerSchema, at, "answer", out);
    } else {
      // One client shape per alternative: each alternative the API may answer must be read by one of them, and each must describe one.
      const shapes = route.answer as readonly Shape[];
      const alts = alternatives(doc, answerSchema);
      const problems = (shape: Shape, alt: Schema, where: string) => {
        const o: string[] = [];
        compare(doc, shape, alt, where, "answer", o);
        return o;
      };
      alts.forEach((alt, i) => {
        const tries = shapes.map((s) => problems(s, alt, `${at} (alternative ${i + 1})`));
        if (!tries.some((t) => t.length === 0)) out.push(...tries.reduce((a, b) => (b.length < a.length ? b : a)));
      });
      shapes.forEach((s, i) => {
        if (!alts.some((alt) => problems(s, alt, at).length === 0)) out.push(`${at}: the client's answer shape ${i + 1} matches no alternative of the document`);
      });
    }
  }
  return out;
}

const routes = Object.entries(CLIENT_CONTRACT) as [string, RouteContract][];

describe("the agent's client against openapi/openapi.json", () => {
  const doc = loadDocument();

  for (const [name, route] of routes) {
    it(`${name}: ${route.method.toUpperCase()} ${route.path}`, () => {
      expect(routeProblems(doc, route)).toEqual([]);
    });
  }

  it(`flows: POST ${FLOWS_CONTRACT.path}`, () => {
    expect(routeProblems(doc, FLOWS_CONTRACT)).toEqual([]);
  });

  it(`l7: GET ${L7_CONTRACT.path}`, () => {
    expect(routeProblems(doc, L7_CONTRACT)).toEqual([]);
  });

  it("the datapath's maps in the client's table are the agent's managed maps", () => {
    const [state, delta] = CLIENT_CONTRACT.datapath.answer;
    expect(Object.keys(state.fields.maps.fields).sort()).toEqual([...MANAGED_MAPS].sort());
    expect(Object.keys(delta.fields.upserts.fields).sort()).toEqual([...MANAGED_MAPS].sort());
    expect(Object.keys(delta.fields.deletes.fields).sort()).toEqual([...MANAGED_MAPS].sort());
  });

  it("the client's types are the table's", () => {
    expectTypeOf<NodeWorkload>().toEqualTypeOf<{
      tenant: string;
      name: string;
      identity: string;
      addresses: string[];
      interface?: string;
      spiffeId?: string;
      healthCheck?: {
        protocol: string;
        port: number;
        path?: string;
        expectStatus?: number;
        intervalSeconds: number;
        timeoutSeconds: number;
        healthyThreshold: number;
        unhealthyThreshold: number;
      };
    }>();
    expectTypeOf<RegisterBody>().toEqualTypeOf<{ joinToken: string; name: string; zone: string; labels?: Record<string, string> }>();
    expectTypeOf<RegisteredNode>().toEqualTypeOf<{ node: { name: string; podCidr?: string | null }; credential: string }>();
    expectTypeOf<NodeAnswer>().toEqualTypeOf<{ name: string; podCidr?: string | null }>();
    expectTypeOf<StatusReport>().toEqualTypeOf<{
      appliedRevision: number;
      hash: string;
      counters: Record<string, number>;
      errors: string[];
      unresolved?: { tenant: string; workload: string; address: string; reason: string }[];
      health?: { tenant: string; workload: string; state: string; since: string }[];
      transport?: { endpoint: string | null; state: string };
      l7?: { state: string; appliedEtag?: string; detail?: string };
    }>();
    expectTypeOf<X509SvidAnswer>().toEqualTypeOf<{ certificate: string; chain: string[]; expiresAt: string; serial: string }>();
    expectTypeOf<DatapathStateBody["revision"]>().toEqualTypeOf<number>();
    expectTypeOf<DatapathDeltaBody["hash"]>().toEqualTypeOf<string>();
  });
});

describe("the comparison catches drift (each change to a copy of the document)", () => {
  type Edit = (doc: Document) => void;
  const response = (doc: Document, path: string, method: string, status: string) => deref(doc, doc.paths[path]![method]!.responses![status]!.content!["application/json"]!.schema!);
  const body = (doc: Document, path: string, method: string) => deref(doc, doc.paths[path]![method]!.requestBody!.content!["application/json"]!.schema!);
  const workload = (doc: Document) => deref(doc, response(doc, "/v1/nodes/{node}/workloads", "get", "200").properties!.items!.items!);
  const datapathState = (doc: Document) => alternatives(doc, response(doc, "/v1/nodes/{node}/datapath", "get", "200"))[0]!;
  const edits: [string, Edit, RegExp][] = [
    ["NodeWorkload loses identity", (d) => delete workload(d).properties!.identity, /workloads 200\.items\[\]\.identity: not in the document/],
    ["NodeWorkload's addresses become a string", (d) => (workload(d).properties!.addresses = { type: "string" }), /\.addresses: the client reads array, the document says string/],
    ["the node's name is no longer required", (d) => (response(d, "/v1/nodes/{node}", "get", "200").required = ["zone"]), /\{node\} 200\.name: the client needs it, the document does not require it/],
    ["the registration answer's credential may be null", (d) => (response(d, "/v1/nodes/register", "post", "201").properties!.credential = { anyOf: [{ type: "string" }, { type: "null" }] }), /register 201\.credential: the document allows null/],
    ["the status report requires a new field", (d) => body(d, "/v1/nodes/{node}/status", "put").required!.push("uptime"), /status body\.uptime: the document requires it, the client does not send it/],
    ["the status report's counters become strings", (d) => (body(d, "/v1/nodes/{node}/status", "put").properties!.counters!.additionalProperties = { type: "string" }), /status body\.counters\{\}: the client sends integer, the document says string/],
    ["the datapath gains a seventh map", (d) => (datapathState(d).properties!.maps!.properties!.nat = { type: "array" }), /\.maps\.nat: in the document, and the client refuses/],
    ["the datapath answer loses its delta", (d) => (response(d, "/v1/nodes/{node}/datapath", "get", "200").anyOf!.length = 1), /answer shape 2 matches no alternative/],
    ["the datapath route loses its 410", (d) => delete d.paths["/v1/nodes/{node}/datapath"]!.get!.responses!["410"], /has no 410 answer/],
    ["the X.509-SVID route moves", (d) => delete d.paths["/v1/tenants/{tenant}/identities/{name}/x509-svids"], /x509-svids: not in the document/],
    ["the workloads route loses ?cursor", (d) => (d.paths["/v1/nodes/{node}/workloads"]!.get!.parameters = d.paths["/v1/nodes/{node}/workloads"]!.get!.parameters!.filter((p) => p.name !== "cursor")), /no query parameter cursor/],
  ];

  for (const [what, edit, expected] of edits) {
    it(what, () => {
      const doc = loadDocument();
      edit(doc);
      const problems = routes.flatMap(([, route]) => routeProblems(doc, route));
      expect(problems.join("\n")).toMatch(expected);
    });
  }
});

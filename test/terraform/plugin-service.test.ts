// The tfplugin6.Provider RPCs without the transport: schema conversion,
// what each RPC hands the handler and answers, and the refusals (unknown
// types, calls before ConfigureProvider, moves, functions).
import { encode as msgpackEncode } from "@msgpack/msgpack";
import { beforeEach, describe, expect, it } from "vitest";
import { UNKNOWN, type TfObject, type TfSchema, type TfValue } from "../../terraform/src/framework.ts";
import { decodeDynamicValue, encodeDynamicValue } from "../../terraform/src/plugin/codec.ts";
import { impliedType } from "../../terraform/src/plugin/cty.ts";
import { ProviderService, SERVER_CAPABILITIES } from "../../terraform/src/plugin/provider-service.ts";
import { toWireSchema } from "../../terraform/src/plugin/schema.ts";
import { THING_ATTRIBUTES, calls, testProvider, thing } from "./plugin-fixture.ts";

const thingType = impliedType({ version: 1, attributes: THING_ATTRIBUTES });
const providerType = impliedType(testProvider().schema);
const nil = { msgpack: Buffer.from([0xc0]), json: Buffer.alloc(0) };
/** A value as Terraform sends it: msgpack of the schema's type. */
function dv(v: TfValue, t = thingType) {
  const diags: unknown[] = [];
  const out = { ...encodeDynamicValue(v, t, diags as never[]), json: Buffer.alloc(0) };
  expect(diags).toEqual([]);
  return out;
}
/** Bytes that need not fit the schema. */
const raw = (v: unknown) => ({ msgpack: Buffer.from(msgpackEncode(v)), json: Buffer.alloc(0) });
const state = (res: Record<string, unknown>, key: string, t = thingType): TfValue =>
  decodeDynamicValue(res[key] as { msgpack: Buffer }, t);
const diagnostics = (res: Record<string, unknown>) => res.diagnostics as { severity: string; summary: string; detail: string; attribute?: unknown }[];

async function configured(provider = testProvider()): Promise<ProviderService> {
  const s = new ProviderService(provider);
  const res = await s.ConfigureProvider({ config: dv({ endpoint: "http://x", token: null }, providerType), terraform_version: "1.11.4" });
  expect(diagnostics(res)).toEqual([]);
  return s;
}

beforeEach(() => {
  calls.length = 0;
});

describe("schemas", () => {
  it("sends nested attributes as nested_type with their nesting, and types as cty JSON", () => {
    const schema: TfSchema = {
      version: 3,
      description: "d",
      attributes: [
        { name: "name", type: "string", required: true, description: "the name" },
        { name: "tags", type: ["map", "string"], optional: true, computed: true },
        { name: "obj", type: ["object", { a: "number", b: ["list", "bool"] }], optional: true, sensitive: true },
        {
          name: "backends",
          optional: true,
          nested: { nesting: "set", attributes: [{ name: "spec", nested: { nesting: "map", attributes: [{ name: "x", type: "string", optional: true }] }, optional: true }] },
        },
      ],
    };
    const w = toWireSchema(schema);
    expect(w.version).toBe(3);
    expect(w.block.version).toBe(3);
    expect(w.block.description).toBe("d");
    const [name, tags, o, backends] = w.block.attributes;
    expect(JSON.parse(name!.type.toString())).toBe("string");
    expect(name).toMatchObject({ name: "name", required: true, optional: false, computed: false, description: "the name" });
    expect(JSON.parse(tags!.type.toString())).toEqual(["map", "string"]);
    expect(tags).toMatchObject({ optional: true, computed: true });
    expect(JSON.parse(o!.type.toString())).toEqual(["object", { a: "number", b: ["list", "bool"] }]);
    expect(o!.sensitive).toBe(true);
    expect(backends!.type.length).toBe(0);
    expect(backends!.nested_type!.nesting).toBe("SET");
    const spec = backends!.nested_type!.attributes[0]!;
    expect(spec.nested_type).toMatchObject({ nesting: "MAP", attributes: [{ name: "x", optional: true }] });
    // The value shape Terraform derives from it: a set of objects holding a map of objects.
    expect(impliedType(schema)).toEqual({
      kind: "object",
      attributes: new Map([
        ["name", { kind: "string" }],
        ["tags", { kind: "map", element: { kind: "string" } }],
        ["obj", { kind: "object", attributes: new Map([["a", { kind: "number" }], ["b", { kind: "list", element: { kind: "bool" } }]]) }],
        [
          "backends",
          {
            kind: "set",
            element: { kind: "object", attributes: new Map([["spec", { kind: "map", element: { kind: "object", attributes: new Map([["x", { kind: "string" }]]) } }]]) },
          },
        ],
      ]),
    });
  });

  it("answers GetProviderSchema with every resource and data source, plan_destroy on", async () => {
    const res = await new ProviderService(testProvider()).GetProviderSchema({});
    expect(res.diagnostics).toEqual([]);
    expect(Object.keys(res.resource_schemas as object)).toEqual(["weft_thing"]);
    expect(Object.keys(res.data_source_schemas as object)).toEqual(["weft_echo"]);
    expect(res.server_capabilities).toEqual({ plan_destroy: true, get_provider_schema_optional: false, move_resource_state: false });
    expect(res.functions).toEqual({});
    expect(res.ephemeral_resource_schemas).toEqual({});
  });

  it("answers a schema that does not convert with a diagnostic, not a crash", async () => {
    const p = testProvider();
    p.resources[0]!.schema = { version: 0, attributes: [{ name: "both", type: "string", nested: { nesting: "single", attributes: [] } }] };
    const res = await new ProviderService(p).GetProviderSchema({});
    expect(diagnostics(res)[0]).toMatchObject({ severity: "ERROR", summary: "Invalid schema of weft_thing", detail: expect.stringMatching(/exactly one of type and nested/) });
  });

  it("answers GetMetadata with the type names", async () => {
    const res = await new ProviderService(testProvider()).GetMetadata({});
    expect(res).toMatchObject({ server_capabilities: SERVER_CAPABILITIES, resources: [{ type_name: "weft_thing" }], data_sources: [{ type_name: "weft_echo" }] });
  });
});

describe("validation", () => {
  it("passes config, unknowns included, to the handler and its diagnostics back with their paths", async () => {
    const s = new ProviderService(testProvider());
    const ok = await s.ValidateResourceConfig({ type_name: "weft_thing", config: dv(thing({ name: "web", size: null })) });
    expect(diagnostics(ok)).toEqual([]);
    const bad = await s.ValidateResourceConfig({ type_name: "weft_thing", config: dv(thing({ name: "Web", backends: [{ name: "a", weight: -1 }] })) });
    expect(diagnostics(bad)).toEqual([{ severity: "ERROR", summary: "Invalid name", detail: '"Web" must be lowercase letters only.', attribute: { steps: [{ attribute_name: "name" }] } }]);
    const weight = await s.ValidateResourceConfig({ type_name: "weft_thing", config: dv(thing({ name: "web", backends: [{ name: "a", weight: 1 }, { name: "b", weight: -1 }] })) });
    expect(diagnostics(weight)[0]!.attribute).toEqual({ steps: [{ attribute_name: "backends" }, { element_key_int: 1 }, { attribute_name: "weight" }] });
    const provider = await s.ValidateProviderConfig({ config: dv({ endpoint: "invalid", token: null }, providerType) });
    expect(diagnostics(provider)[0]).toMatchObject({ summary: "Invalid endpoint", attribute: { steps: [{ attribute_name: "endpoint" }] } });
    const echoType = impliedType(testProvider().dataSources[0]!.schema);
    const data = await s.ValidateDataResourceConfig({ type_name: "weft_echo", config: dv({ input: "x", output: null }, echoType) });
    expect(diagnostics(data)).toEqual([]);
  });

  it("names an unknown resource type", async () => {
    const res = await new ProviderService(testProvider()).ValidateResourceConfig({ type_name: "weft_nope", config: nil });
    expect(diagnostics(res)[0]).toMatchObject({ severity: "ERROR", summary: "Unknown resource type" });
  });

  it("refuses a config that does not fit the schema, naming the attribute", async () => {
    const res = await new ProviderService(testProvider()).ValidateResourceConfig({ type_name: "weft_thing", config: raw({ ...thing({ name: "a" }), size: "big" }) });
    expect(diagnostics(res)[0]).toMatchObject({ severity: "ERROR", detail: "size: number is required, got a string", attribute: { steps: [{ attribute_name: "size" }] } });
  });
});

describe("resource lifecycle", () => {
  it("refuses lifecycle calls before ConfigureProvider", async () => {
    const s = new ProviderService(testProvider());
    const res = await s.ReadResource({ type_name: "weft_thing", current_state: dv(thing({ name: "a" })), private: Buffer.alloc(0) });
    expect(diagnostics(res)[0]).toMatchObject({ severity: "ERROR", summary: "Provider not configured" });
    // ... and hands the state back untouched
    expect(state(res, "new_state")).toEqual(thing({ name: "a" }));
  });

  it("plans a create with unknown computed attributes, then applies it", async () => {
    const s = await configured();
    const config = thing({ name: "web", tags: { a: "1" }, labels: ["x"], extra: { k: [1, "two"] }, backends: [{ name: "a", weight: null }], spec: { mode: "m" } });
    const plan = await s.PlanResourceChange({ type_name: "weft_thing", prior_state: nil, proposed_new_state: dv(config), config: dv(config), prior_private: Buffer.alloc(0) });
    expect(diagnostics(plan)).toEqual([]);
    const planned = state(plan, "planned_state") as TfObject;
    expect(planned).toEqual({ ...config, id: UNKNOWN, revision: UNKNOWN, backends: [{ name: "a", weight: UNKNOWN }] });
    expect(plan.requires_replace).toEqual([]);

    const apply = await s.ApplyResourceChange({ type_name: "weft_thing", prior_state: nil, planned_state: plan.planned_state, config: dv(config), planned_private: Buffer.from("p") });
    expect(diagnostics(apply)).toEqual([]);
    expect(state(apply, "new_state")).toEqual({ ...config, id: "thing-web", revision: 1, backends: [{ name: "a", weight: 1 }] });
    expect(apply.private).toEqual(Buffer.from("p"));
    expect(calls).toEqual(["PUT /things/web"]);
  });

  it("plans a rename as a replace, with requires_replace naming the attribute", async () => {
    const s = await configured();
    const prior = thing({ id: "thing-a", name: "a", revision: 1 });
    const next = thing({ name: "b" });
    const plan = await s.PlanResourceChange({ type_name: "weft_thing", prior_state: dv(prior), proposed_new_state: dv({ ...next, id: "thing-a", revision: 1 }), config: dv(next), prior_private: Buffer.from("keep") });
    expect(plan.requires_replace).toEqual([{ steps: [{ attribute_name: "name" }] }]);
    expect(plan.planned_private).toEqual(Buffer.from("keep"));
  });

  it("tells the create half of a replacement from a plain create, by the private bytes it gave the old object", async () => {
    const provider = testProvider();
    const handler = provider.resources[0]!;
    const planOf = handler.plan.bind(handler);
    const replacing: (boolean | undefined)[] = [];
    handler.plan = (req) => {
      replacing.push(req.replacing);
      return planOf(req);
    };
    const s = await configured(provider);
    const prior = thing({ id: "thing-a", name: "a", revision: 1 });
    const config = thing({ name: "a" });
    // Terraform: plan the existing object (-replace forces the replacement), then its new half with a null
    // prior and the planned private bytes of the first call.
    const first = await s.PlanResourceChange({ type_name: "weft_thing", prior_state: dv(prior), proposed_new_state: dv(prior), config: dv(config), prior_private: Buffer.alloc(0) });
    expect(first.planned_private).not.toEqual(Buffer.alloc(0));
    await s.PlanResourceChange({ type_name: "weft_thing", prior_state: nil, proposed_new_state: dv(config), config: dv(config), prior_private: first.planned_private });
    await s.PlanResourceChange({ type_name: "weft_thing", prior_state: nil, proposed_new_state: dv(config), config: dv(config), prior_private: Buffer.alloc(0) });
    await s.PlanResourceChange({ type_name: "weft_thing", prior_state: nil, proposed_new_state: dv(config), config: dv(config), prior_private: undefined });
    expect(replacing).toEqual([false, true, false, false]);
  });

  it("plans a destroy (plan_destroy) and applies it with a null new state", async () => {
    const s = await configured();
    const prior = thing({ id: "thing-a", name: "a", revision: 1 });
    const plan = await s.PlanResourceChange({ type_name: "weft_thing", prior_state: dv(prior), proposed_new_state: nil, config: nil, prior_private: Buffer.alloc(0) });
    expect(state(plan, "planned_state")).toBeNull();
    const apply = await s.ApplyResourceChange({ type_name: "weft_thing", prior_state: dv(prior), planned_state: nil, config: nil, planned_private: Buffer.alloc(0) });
    expect(hex(apply.new_state)).toBe("c0");
    expect(calls).toEqual(["DELETE /things/a"]);
  });

  it("reads: the same state back, or a null new_state when the object is gone", async () => {
    const s = await configured();
    const present = thing({ id: "thing-a", name: "a", revision: 2 });
    const read = await s.ReadResource({ type_name: "weft_thing", current_state: dv(present), private: Buffer.from("pv") });
    expect(state(read, "new_state")).toEqual(present);
    expect(read.private).toEqual(Buffer.from("pv"));
    const gone = await s.ReadResource({ type_name: "weft_thing", current_state: dv(thing({ id: "thing-gone", name: "gone" })), private: Buffer.alloc(0) });
    expect(diagnostics(gone)).toEqual([]);
    expect(hex(gone.new_state)).toBe("c0");
  });

  it("imports by id, and says so when there is nothing to import", async () => {
    const s = await configured();
    const res = await s.ImportResourceState({ type_name: "weft_thing", id: "web" });
    expect(diagnostics(res)).toEqual([]);
    const [imported] = res.imported_resources as { type_name: string; state: { msgpack: Buffer } }[];
    expect(imported!.type_name).toBe("weft_thing");
    expect(decodeDynamicValue(imported!.state, thingType)).toEqual(thing({ id: "thing-web", name: "web", revision: 1 }));
    const missing = await s.ImportResourceState({ type_name: "weft_thing", id: "missing" });
    expect(missing.imported_resources).toEqual([]);
    expect(diagnostics(missing)[0]).toMatchObject({ severity: "ERROR", summary: "Cannot import a missing object" });
  });

  it("upgrades: current-version state through the schema, older state through the handler", async () => {
    const s = new ProviderService(testProvider());
    // Same version: an attribute the schema no longer has is dropped, missing ones are null.
    const same = await s.UpgradeResourceState({ type_name: "weft_thing", version: 1, raw_state: { json: Buffer.from('{"id":"thing-a","name":"a","dropped":1}'), flatmap: {} } });
    expect(diagnostics(same)).toEqual([]);
    expect(state(same, "upgraded_state")).toEqual(thing({ id: "thing-a", name: "a" }));
    // Version 0 called the name "title".
    const old = await s.UpgradeResourceState({ type_name: "weft_thing", version: 0, raw_state: { json: Buffer.from('{"id":"thing-a","title":"a","revision":4}'), flatmap: {} } });
    expect(diagnostics(old)).toEqual([]);
    expect(state(old, "upgraded_state")).toEqual(thing({ id: "thing-a", name: "a", revision: 4 }));
    const newer = await s.UpgradeResourceState({ type_name: "weft_thing", version: 2, raw_state: { json: Buffer.from("{}"), flatmap: {} } });
    expect(diagnostics(newer)[0]).toMatchObject({ severity: "ERROR", summary: "Stored state is from a newer provider" });
    const flat = await s.UpgradeResourceState({ type_name: "weft_thing", version: 1, raw_state: { json: Buffer.alloc(0), flatmap: { id: "x" } } });
    expect(diagnostics(flat)[0]!.detail).toMatch(/legacy flatmap/);
  });

  it("reads a data source", async () => {
    const s = await configured();
    const t = impliedType(testProvider().dataSources[0]!.schema);
    const res = await s.ReadDataSource({ type_name: "weft_echo", config: dv({ input: "hi", output: null }, t) });
    expect(state(res, "state", t)).toEqual({ input: "hi", output: "echo: hi" });
  });

  it("StopProvider abandons a request in flight; later calls run normally", async () => {
    const s = await configured();
    const hanging = s.ReadResource({ type_name: "weft_thing", current_state: dv(thing({ name: "hang" })), private: Buffer.alloc(0) });
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toEqual(["GET /hang"]);
    expect(await s.StopProvider({})).toEqual({ Error: "" });
    const res = await hanging;
    expect(diagnostics(res)[0]).toMatchObject({ summary: "Read interrupted", detail: expect.stringMatching(/asked the provider to stop/) });
    const after = await s.ReadResource({ type_name: "weft_thing", current_state: dv(thing({ name: "a" })), private: Buffer.alloc(0) });
    expect(diagnostics(after)).toEqual([]);
  });
});

describe("what the provider does not offer", () => {
  it("refuses MoveResourceState with a diagnostic, offers no functions and no ephemeral resources", async () => {
    const s = new ProviderService(testProvider());
    const move = await s.MoveResourceState({ source_type_name: "x_old", target_type_name: "weft_thing" });
    expect(diagnostics(move)[0]).toMatchObject({ severity: "ERROR", summary: "Moving resource state is not supported" });
    expect(await s.GetFunctions({})).toEqual({ functions: {}, diagnostics: [] });
    expect(((await s.CallFunction({ name: "f" })).error as { text: string }).text).toMatch(/no function "f"/);
    expect(diagnostics(await s.OpenEphemeralResource({ type_name: "weft_e" }))[0]!.summary).toBe("Unknown ephemeral resource type");
  });
});

function hex(v: unknown): string {
  const b = (v as { msgpack: Buffer }).msgpack;
  return Buffer.from(b).toString("hex");
}

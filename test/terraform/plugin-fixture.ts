// A test-only provider for the plugin layer: no Weft API behind it, every
// kind of attribute the codec handles, and hooks for the paths under test
// (a read that hangs until StopProvider, a resource gone outside Terraform,
// an older schema version to upgrade from). Its resource keeps its whole
// state in Terraform's state, so plan/apply/plan round trips need nothing
// else running.
import { UNKNOWN, type Diagnostic, type PlanResult, type ProviderContext, type ProviderHandler, type TfAttribute, type TfObject, type TfValue } from "../../terraform/src/framework.ts";

export const THING_ATTRIBUTES: TfAttribute[] = [
  { name: "id", type: "string", computed: true, description: "Assigned at create." },
  { name: "name", type: "string", required: true, description: "Lowercase letters; changing it replaces the thing." },
  { name: "size", type: "number", optional: true },
  { name: "enabled", type: "bool", optional: true },
  { name: "tags", type: ["map", "string"], optional: true },
  { name: "labels", type: ["set", "string"], optional: true },
  { name: "ports", type: ["list", "number"], optional: true },
  { name: "extra", type: "dynamic", optional: true },
  {
    name: "backends",
    optional: true,
    nested: {
      nesting: "list",
      attributes: [
        { name: "name", type: "string", required: true },
        { name: "weight", type: "number", optional: true, computed: true },
      ],
    },
  },
  {
    name: "spec",
    optional: true,
    nested: { nesting: "single", attributes: [{ name: "mode", type: "string", optional: true }] },
  },
  { name: "revision", type: "number", computed: true, description: "Bumped by every apply." },
];

const NAME = /^[a-z]+$/;

function validateThing(config: TfObject): Diagnostic[] {
  const name = config.name;
  if (typeof name === "string" && !NAME.test(name)) {
    return [{ severity: "error", summary: "Invalid name", detail: `"${name}" must be lowercase letters only.`, attribute: [{ attribute: "name" }] }];
  }
  const backends = config.backends;
  if (Array.isArray(backends)) {
    for (const [i, b] of backends.entries()) {
      const w = b && typeof b === "object" && !Array.isArray(b) ? b.weight : null;
      if (typeof w === "number" && w < 0) {
        return [{ severity: "error", summary: "Invalid weight", detail: "Weights are not negative.", attribute: [{ attribute: "backends" }, { index: i }, { attribute: "weight" }] }];
      }
    }
  }
  return [];
}

/** Every attribute null, then the given ones. */
export function thing(values: TfObject): TfObject {
  return { ...Object.fromEntries(THING_ATTRIBUTES.map((a) => [a.name, null])), ...values };
}

function withDefaultWeights(backends: TfValue | undefined, unknown: boolean): TfValue {
  if (!Array.isArray(backends)) return backends ?? null;
  return backends.map((b) => {
    if (!b || typeof b !== "object" || Array.isArray(b)) return b;
    // plan: an unset weight is computed at apply; apply: it becomes 1
    const w = b.weight ?? UNKNOWN;
    return { ...b, weight: w === UNKNOWN && !unknown ? 1 : w };
  });
}

/** Calls made to the fixture's context, for tests to look at. */
export const calls: string[] = [];

function fixtureContext(endpoint: string): ProviderContext {
  return {
    endpoint,
    token: null,
    request(method, path) {
      calls.push(`${method} ${path}`);
      // "/hang" never answers: only StopProvider gets the caller out.
      if (path === "/hang") return new Promise<Response>(() => {});
      return Promise.resolve(new Response(null, { status: 204 }));
    },
  };
}

export function testProvider(): ProviderHandler {
  return {
    schema: {
      version: 0,
      attributes: [
        { name: "endpoint", type: "string", optional: true },
        { name: "token", type: "string", optional: true, sensitive: true },
      ],
    },
    validate(config) {
      return config.endpoint === "invalid"
        ? [{ severity: "error", summary: "Invalid endpoint", detail: "The fixture refuses \"invalid\".", attribute: [{ attribute: "endpoint" }] }]
        : [];
    },
    async configure(config) {
      const endpoint = typeof config.endpoint === "string" ? config.endpoint : "http://fixture.invalid";
      return { ctx: fixtureContext(endpoint), diagnostics: [] };
    },
    resources: [
      {
        typeName: "weft_thing",
        schema: { version: 1, attributes: THING_ATTRIBUTES },
        validate: validateThing,
        async plan({ prior, proposed }): Promise<PlanResult> {
          if (proposed === null) return { planned: null, requiresReplace: [], diagnostics: [] };
          const create = prior === null || prior.name !== proposed.name;
          const changed = create || JSON.stringify({ ...proposed, revision: null, id: null }) !== JSON.stringify({ ...prior, revision: null, id: null });
          const planned: TfObject = {
            ...proposed,
            id: create ? UNKNOWN : prior!.id!,
            revision: changed ? UNKNOWN : prior!.revision!,
            backends: withDefaultWeights(proposed.backends, true),
          };
          return { planned, requiresReplace: prior !== null && prior.name !== proposed.name ? [[{ attribute: "name" }]] : [], diagnostics: [] };
        },
        async apply({ prior, planned, ctx }) {
          if (planned === null) {
            await ctx.request("DELETE", `/things/${String(prior?.name)}`);
            return { state: null, diagnostics: [] };
          }
          await ctx.request("PUT", `/things/${String(planned.name)}`);
          const revision = typeof prior?.revision === "number" ? prior.revision + 1 : 1;
          return {
            state: { ...planned, id: `thing-${String(planned.name)}`, revision, backends: withDefaultWeights(planned.backends, false) },
            diagnostics: [],
          };
        },
        async read(current, ctx) {
          if (current.name === "gone") return { state: null, diagnostics: [] };
          if (current.name === "hang") {
            try {
              await ctx.request("GET", "/hang");
            } catch (e) {
              return { state: current, diagnostics: [{ severity: "error", summary: "Read interrupted", detail: (e as Error).message }] };
            }
          }
          return { state: current, diagnostics: [] };
        },
        async importState(id, ctx) {
          await ctx.request("GET", `/things/${id}`);
          if (id === "missing") return { state: null, diagnostics: [] };
          return { state: thing({ id: `thing-${id}`, name: id, revision: 1 }), diagnostics: [] };
        },
        upgrade(version, state) {
          // Version 0 called the name "title".
          if (version !== 0) return { state: thing({}), diagnostics: [{ severity: "error", summary: `no upgrade from version ${version}` }] };
          const { title, ...rest } = state as Record<string, TfObject[string]>;
          return { state: thing({ ...rest, name: title ?? null }), diagnostics: [] };
        },
      },
    ],
    dataSources: [
      {
        typeName: "weft_echo",
        schema: {
          version: 0,
          attributes: [
            { name: "input", type: "string", required: true },
            { name: "output", type: "string", computed: true },
          ],
        },
        validate: () => [],
        async read(config) {
          return { state: { input: config.input!, output: `echo: ${String(config.input)}` }, diagnostics: [] };
        },
      },
    ],
  };
}

// The tfplugin6.Provider service: each RPC decodes its DynamicValues by the
// schema, calls the framework handler, and encodes the answer. No gRPC here
// (serve.ts binds these methods to the server), so tests can call them
// directly. Every failure becomes a diagnostic, never a gRPC error: Terraform
// shows diagnostics to the user with the attribute they point at, while a
// gRPC error only says "rpc error: code = Unknown".
import type {
  DataSourceHandler,
  Diagnostic,
  ProviderContext,
  ProviderHandler,
  ResourceHandler,
  TfObject,
  TfSchema,
  TfValue,
} from "../framework.ts";
import { UNKNOWN } from "../framework.ts";
import { type DynamicValue, ValueError, decodeDynamicValue, encodeDynamicValue, fromWire } from "./codec.ts";
import { type CtyType, impliedType } from "./cty.ts";
import { type WireDiagnostic, diagnosticFromError, errorDiagnostic, hasErrors, toWireDiagnostic, toWirePath } from "./diagnostics.ts";
import { type WireSchema, toWireSchema } from "./schema.ts";

/** Terraform calls PlanResourceChange on destroy too; schemas are not cached across processes. */
export const SERVER_CAPABILITIES = {
  plan_destroy: true,
  get_provider_schema_optional: false,
  move_resource_state: false,
} as const;

/** A refusal that is already a diagnostic (unknown type, not configured, ...). */
class Refusal extends Error {
  constructor(readonly diagnostic: Diagnostic) {
    super(diagnostic.summary);
  }
}

/** What the in-flight handler calls see once Terraform sends StopProvider. */
export class StoppedError extends Error {
  override name = "StoppedError";
  constructor() {
    super("Terraform asked the provider to stop (interrupted); the request to Weft was abandoned");
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new StoppedError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new StoppedError());
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Private bytes of a planned change whose prior object exists, so that the create half of its replacement can tell. */
const EXISTING_OBJECT = Buffer.from("weft:existing");
const privateBytes = (v: unknown): Buffer => (Buffer.isBuffer(v) ? v : v instanceof Uint8Array ? Buffer.from(v) : Buffer.alloc(0));

interface Typed<H> {
  handler: H;
  type: CtyType;
}

type Req = Record<string, unknown>;
type Res = Record<string, unknown>;
const wire = (diags: readonly Diagnostic[]): WireDiagnostic[] => diags.map(toWireDiagnostic);

function asObject(v: TfValue, what: string): TfObject | null {
  if (v === null) return null;
  if (v === UNKNOWN || typeof v !== "object" || Array.isArray(v)) throw new ValueError([], `${what} must be a known object`);
  return v;
}

export class ProviderService {
  private readonly providerType: CtyType;
  private readonly resources = new Map<string, Typed<ResourceHandler>>();
  private readonly dataSources = new Map<string, Typed<DataSourceHandler>>();
  private schemas: Res | null = null;
  private ctx: ProviderContext | null = null;
  /** Aborted by StopProvider and then replaced: Stop cancels what is in flight, not what comes after. */
  private stop = new AbortController();

  /** Schemas that do not convert: GetProviderSchema reports them, so Terraform shows why. */
  private readonly schemaProblems: Diagnostic[] = [];

  constructor(private readonly provider: ProviderHandler) {
    const typeOf = (what: string, schema: TfSchema): CtyType => {
      try {
        return impliedType(schema);
      } catch (e) {
        this.schemaProblems.push(diagnosticFromError(`Invalid schema of ${what}`, e));
        return { kind: "object", attributes: new Map() };
      }
    };
    this.providerType = typeOf("the provider", provider.schema);
    for (const r of provider.resources) this.resources.set(r.typeName, { handler: r, type: typeOf(r.typeName, r.schema) });
    for (const d of provider.dataSources) this.dataSources.set(d.typeName, { handler: d, type: typeOf(d.typeName, d.schema) });
  }

  // ---- helpers ----

  private resource(typeName: unknown): Typed<ResourceHandler> {
    const r = this.resources.get(String(typeName));
    if (!r) throw new Refusal(errorDiagnostic("Unknown resource type", `This provider has no resource type ${JSON.stringify(typeName)}.`));
    return r;
  }

  private dataSource(typeName: unknown): Typed<DataSourceHandler> {
    const d = this.dataSources.get(String(typeName));
    if (!d) throw new Refusal(errorDiagnostic("Unknown data source", `This provider has no data source ${JSON.stringify(typeName)}.`));
    return d;
  }

  /**
   * The configured context, its request() abandoned when StopProvider
   * arrives while it runs. Other members (endpoint, token, anything else
   * the resources put there) are reached through the prototype.
   */
  private context(rpc: string): ProviderContext {
    const base = this.ctx;
    if (!base) {
      throw new Refusal(
        errorDiagnostic("Provider not configured", `Terraform called ${rpc} before ConfigureProvider succeeded; check the provider block.`),
      );
    }
    const signal = this.stop.signal;
    const request: ProviderContext["request"] = (method, path, init) => abortable(base.request(method, path, init), signal);
    // defineProperty: an assignment would fail if base's request were read-only (a frozen context).
    return Object.create(base, { request: { value: request, enumerable: true } }) as ProviderContext;
  }

  /** Runs an RPC body; whatever it throws becomes an error diagnostic beside what it collected. */
  private async guard(summary: string, diags: Diagnostic[], body: () => Res | Promise<Res>, fallback: Res = {}): Promise<Res> {
    try {
      const out = await body();
      return { ...out, diagnostics: wire(diags) };
    } catch (e) {
      diags.push(e instanceof Refusal ? e.diagnostic : diagnosticFromError(summary, e));
      return { ...fallback, diagnostics: wire(diags) };
    }
  }

  private decodeObject(dv: unknown, type: CtyType, what: string): TfObject | null {
    return asObject(decodeDynamicValue(dv as DynamicValue | null, type), what);
  }

  private decodeConfig(dv: unknown, type: CtyType): TfObject {
    const v = this.decodeObject(dv, type, "configuration");
    if (v === null) throw new ValueError([], "configuration is missing");
    return v;
  }

  // ---- information ----

  async GetMetadata(_req: Req): Promise<Res> {
    return {
      server_capabilities: SERVER_CAPABILITIES,
      diagnostics: [],
      resources: [...this.resources.keys()].map((type_name) => ({ type_name })),
      data_sources: [...this.dataSources.keys()].map((type_name) => ({ type_name })),
      functions: [],
      ephemeral_resources: [],
    };
  }

  async GetProviderSchema(_req: Req): Promise<Res> {
    if (this.schemas) return this.schemas;
    const diags: Diagnostic[] = [...this.schemaProblems];
    const out = await this.guard("Invalid provider schema", diags, () => {
      const map = <H extends { schema: ResourceHandler["schema"] }>(m: Map<string, Typed<H>>): Record<string, WireSchema> =>
        Object.fromEntries([...m].map(([name, { handler }]) => [name, toWireSchema(handler.schema)]));
      return {
        provider: toWireSchema(this.provider.schema),
        resource_schemas: map(this.resources),
        data_source_schemas: map(this.dataSources),
        functions: {},
        ephemeral_resource_schemas: {},
        server_capabilities: SERVER_CAPABILITIES,
      };
    });
    if (!hasErrors(diags)) this.schemas = out;
    return out;
  }

  // ---- validation ----

  async ValidateProviderConfig(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    return this.guard("Invalid provider configuration", diags, () => {
      diags.push(...this.provider.validate(this.decodeConfig(req.config, this.providerType)));
      return {};
    });
  }

  async ValidateResourceConfig(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    return this.guard("Invalid resource configuration", diags, () => {
      const r = this.resource(req.type_name);
      diags.push(...r.handler.validate(this.decodeConfig(req.config, r.type)));
      return {};
    });
  }

  async ValidateDataResourceConfig(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    return this.guard("Invalid data source configuration", diags, () => {
      const d = this.dataSource(req.type_name);
      diags.push(...d.handler.validate(this.decodeConfig(req.config, d.type)));
      return {};
    });
  }

  /**
   * Terraform calls this for every resource in the state, each time it
   * reads the state. State of the current schema version is decoded by the
   * current schema (attributes it no longer has are dropped, missing ones
   * are null); older state goes through the handler's upgrade.
   */
  async UpgradeResourceState(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    return this.guard("Failed to upgrade the stored state", diags, () => {
      const r = this.resource(req.type_name);
      const raw = (req.raw_state ?? {}) as { json?: Uint8Array | null; flatmap?: Record<string, string> };
      const current = r.handler.schema.version;
      const version = Number(req.version ?? 0);
      if (!raw.json || raw.json.length === 0) {
        const legacy = raw.flatmap && Object.keys(raw.flatmap).length > 0;
        throw new Refusal(
          errorDiagnostic(
            "Cannot upgrade the stored state",
            legacy ? "The state is in the legacy flatmap format, which this provider never wrote." : "The stored state is empty.",
          ),
        );
      }
      if (version > current) {
        throw new Refusal(
          errorDiagnostic(
            "Stored state is from a newer provider",
            `${r.handler.typeName} state has schema version ${version}; this provider knows up to ${current}. Use the newer provider.`,
          ),
        );
      }
      const parsed: unknown = JSON.parse(Buffer.from(raw.json).toString("utf8"));
      let state: TfValue;
      if (version === current) {
        state = fromWire(parsed, r.type, [], { format: "json", extraAttributes: "ignore" });
      } else {
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new ValueError([], "stored state is not an object");
        const out = r.handler.upgrade(version, parsed as Record<string, unknown>);
        diags.push(...out.diagnostics);
        state = out.state;
      }
      return { upgraded_state: encodeDynamicValue(state, r.type, diags) };
    });
  }

  // ---- configuration ----

  async ConfigureProvider(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    return this.guard("Failed to configure the provider", diags, async () => {
      const out = await this.provider.configure(this.decodeConfig(req.config, this.providerType));
      diags.push(...out.diagnostics);
      if (out.ctx && !hasErrors(out.diagnostics)) this.ctx = out.ctx;
      return {};
    });
  }

  // ---- managed resources ----

  /** A failed read hands the current state back: Terraform keeps its state when diagnostics carry errors. */
  async ReadResource(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    const passthrough = { new_state: req.current_state, private: req.private };
    return this.guard(
      "Failed to read the resource",
      diags,
      async () => {
        const r = this.resource(req.type_name);
        const ctx = this.context("ReadResource");
        const current = this.decodeObject(req.current_state, r.type, "current state");
        if (current === null) return { new_state: encodeDynamicValue(null, r.type, diags), private: req.private };
        const out = await r.handler.read(current, ctx);
        diags.push(...out.diagnostics);
        return { new_state: encodeDynamicValue(out.state, r.type, diags), private: req.private };
      },
      passthrough,
    );
  }

  async PlanResourceChange(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    return this.guard("Failed to plan the change", diags, async () => {
      const r = this.resource(req.type_name);
      const ctx = this.context("PlanResourceChange");
      const prior = this.decodeObject(req.prior_state, r.type, "prior state");
      const priorPrivate = privateBytes(req.prior_private);
      const out = await r.handler.plan({
        prior,
        proposed: this.decodeObject(req.proposed_new_state, r.type, "proposed new state"),
        config: this.decodeObject(req.config, r.type, "configuration"),
        ctx,
        // Terraform plans a replacement's new object with a null prior and the private bytes this
        // plan returned for the old one; a plain create has none (nothing to carry them).
        replacing: prior === null && priorPrivate.length > 0,
      });
      diags.push(...out.diagnostics);
      return {
        planned_state: encodeDynamicValue(out.planned, r.type, diags),
        requires_replace: out.requiresReplace.map(toWirePath),
        planned_private: prior !== null && priorPrivate.length === 0 ? EXISTING_OBJECT : req.prior_private,
      };
    });
  }

  /**
   * If the handler throws, the prior state goes back: an absent new state
   * would read as "destroyed" and Terraform would forget an object that
   * may still exist.
   */
  async ApplyResourceChange(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    return this.guard(
      "Failed to apply the change",
      diags,
      async () => {
        const r = this.resource(req.type_name);
        const ctx = this.context("ApplyResourceChange");
        const out = await r.handler.apply({
          prior: this.decodeObject(req.prior_state, r.type, "prior state"),
          planned: this.decodeObject(req.planned_state, r.type, "planned state"),
          config: this.decodeObject(req.config, r.type, "configuration"),
          ctx,
        });
        diags.push(...out.diagnostics);
        return { new_state: encodeDynamicValue(out.state, r.type, diags), private: req.planned_private };
      },
      { new_state: req.prior_state, private: req.planned_private },
    );
  }

  async ImportResourceState(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    return this.guard("Failed to import the resource", diags, async () => {
      const r = this.resource(req.type_name);
      const ctx = this.context("ImportResourceState");
      const id = String(req.id ?? "");
      const out = await r.handler.importState(id, ctx);
      diags.push(...out.diagnostics);
      if (out.state === null) {
        if (!hasErrors(diags)) {
          diags.push(errorDiagnostic("Cannot import a missing object", `No ${r.handler.typeName} with id ${JSON.stringify(id)} exists.`));
        }
        return { imported_resources: [] };
      }
      const state = encodeDynamicValue(out.state, r.type, diags);
      return { imported_resources: [{ type_name: r.handler.typeName, state, private: Buffer.alloc(0) }] };
    });
  }

  async MoveResourceState(req: Req): Promise<Res> {
    return {
      diagnostics: wire([
        errorDiagnostic(
          "Moving resource state is not supported",
          `The Weft provider cannot move ${String(req.source_type_name)} state into ${String(req.target_type_name)}.`,
        ),
      ]),
    };
  }

  async ReadDataSource(req: Req): Promise<Res> {
    const diags: Diagnostic[] = [];
    return this.guard("Failed to read the data source", diags, async () => {
      const d = this.dataSource(req.type_name);
      const ctx = this.context("ReadDataSource");
      const out = await d.handler.read(this.decodeConfig(req.config, d.type), ctx);
      diags.push(...out.diagnostics);
      if (out.state === null && !hasErrors(diags)) {
        diags.push(errorDiagnostic("Data source returned nothing", `${d.handler.typeName} produced no value and no error.`));
      }
      return { state: encodeDynamicValue(out.state, d.type, diags) };
    });
  }

  // ---- what Weft does not offer ----

  private noEphemeral(req: Req): Promise<Res> {
    return Promise.resolve({
      diagnostics: wire([
        errorDiagnostic("Unknown ephemeral resource type", `This provider has no ephemeral resource type ${JSON.stringify(req.type_name)}.`),
      ]),
    });
  }
  ValidateEphemeralResourceConfig = (req: Req): Promise<Res> => this.noEphemeral(req);
  OpenEphemeralResource = (req: Req): Promise<Res> => this.noEphemeral(req);
  RenewEphemeralResource = (req: Req): Promise<Res> => this.noEphemeral(req);
  CloseEphemeralResource = (req: Req): Promise<Res> => this.noEphemeral(req);

  async GetFunctions(_req: Req): Promise<Res> {
    return { functions: {}, diagnostics: [] };
  }

  async CallFunction(req: Req): Promise<Res> {
    return { error: { text: `This provider has no function ${JSON.stringify(req.name)}.` } };
  }

  // ---- shutdown ----

  /** Abandons what is in flight (their requests reject with StoppedError); later calls run normally. */
  async StopProvider(_req: Req): Promise<Res> {
    this.stop.abort();
    this.stop = new AbortController();
    return { Error: "" };
  }
}

/** Every tfplugin6.Provider RPC, in the order of the service definition. */
export const PROVIDER_RPCS = [
  "GetMetadata",
  "GetProviderSchema",
  "ValidateProviderConfig",
  "ValidateResourceConfig",
  "ValidateDataResourceConfig",
  "UpgradeResourceState",
  "ConfigureProvider",
  "ReadResource",
  "PlanResourceChange",
  "ApplyResourceChange",
  "ImportResourceState",
  "MoveResourceState",
  "ReadDataSource",
  "ValidateEphemeralResourceConfig",
  "OpenEphemeralResource",
  "RenewEphemeralResource",
  "CloseEphemeralResource",
  "GetFunctions",
  "CallFunction",
  "StopProvider",
] as const satisfies readonly (keyof ProviderService)[];

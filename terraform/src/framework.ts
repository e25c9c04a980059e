/**
 * The seam between the plugin protocol (terraform/src/plugin/: gRPC,
 * handshake, msgpack, cty) and Weft's resources (terraform/src/weft/).
 * The plugin layer knows nothing of Weft; the resources know nothing of
 * gRPC or msgpack. Values cross this seam as plain JavaScript.
 */

/** A value Terraform does not know yet (planned computed attributes). */
export const UNKNOWN: unique symbol = Symbol.for("weft.terraform.unknown");
export type Unknown = typeof UNKNOWN;

/**
 * A Terraform value as plain JavaScript. Objects always carry every
 * attribute key of their schema, null where unset: the plugin layer fills
 * missing keys before a handler sees a value and refuses extra ones after.
 * Numbers are JavaScript numbers (Weft has no integer beyond 2^53).
 */
export type TfValue = null | Unknown | string | number | boolean | TfValue[] | TfObject;
export interface TfObject {
  [attribute: string]: TfValue;
}

/** cty's type, in the JSON form Terraform's schema carries it ("string", ["list","string"], ...). */
export type TfType =
  | "string"
  | "number"
  | "bool"
  | "dynamic"
  | ["list" | "set" | "map", TfType]
  | ["object", Record<string, TfType>];

export interface TfAttribute {
  name: string;
  /** Exactly one of type and nested. */
  type?: TfType;
  nested?: { nesting: "single" | "list" | "set" | "map"; attributes: TfAttribute[] };
  description?: string;
  required?: boolean;
  optional?: boolean;
  computed?: boolean;
  sensitive?: boolean;
}

export interface TfSchema {
  version: number;
  description?: string;
  attributes: TfAttribute[];
}

/** A step into a value: an attribute name, a list index or a map key. */
export type PathStep = { attribute: string } | { index: number } | { key: string };
export type AttributePath = PathStep[];

export interface Diagnostic {
  severity: "error" | "warning";
  summary: string;
  detail?: string;
  /** The attribute it is about, so Terraform points at the config line. */
  attribute?: AttributePath;
}

/** What ConfigureProvider produced; handed to every resource call. */
export interface ProviderContext {
  endpoint: string;
  token: string | null;
  /** fetch against the endpoint with the bearer token; the path starts with "/". */
  request(method: string, path: string, init?: { body?: unknown; headers?: Record<string, string> }): Promise<Response>;
}

export interface PlanRequest {
  /** null on create. */
  prior: TfObject | null;
  /** Terraform's proposal: config merged with prior state; null on destroy. */
  proposed: TfObject | null;
  config: TfObject | null;
  ctx: ProviderContext;
  /**
   * True when this create is the second half of a replacement (-replace, a
   * taint, a changed key): Terraform plans the new object while the old one,
   * possibly under the same id, still exists.
   */
  replacing?: boolean;
}
export interface PlanResult {
  /** Computed attributes that will change are UNKNOWN. */
  planned: TfObject | null;
  requiresReplace: AttributePath[];
  diagnostics: Diagnostic[];
}

export interface ApplyRequest {
  prior: TfObject | null;
  /** null means destroy. */
  planned: TfObject | null;
  config: TfObject | null;
  ctx: ProviderContext;
}

export interface ResourceHandler {
  typeName: string;
  schema: TfSchema;
  validate(config: TfObject): Diagnostic[];
  plan(req: PlanRequest): Promise<PlanResult>;
  apply(req: ApplyRequest): Promise<{ state: TfObject | null; diagnostics: Diagnostic[] }>;
  /** state null: gone outside Terraform (404), so Terraform plans a create. */
  read(current: TfObject, ctx: ProviderContext): Promise<{ state: TfObject | null; diagnostics: Diagnostic[] }>;
  /** The id a user passes to `terraform import`, e.g. "acme/web". */
  importState(id: string, ctx: ProviderContext): Promise<{ state: TfObject | null; diagnostics: Diagnostic[] }>;
  /** Stored state JSON of an older schema version → a value of the current one. */
  upgrade(version: number, state: Record<string, unknown>): { state: TfObject; diagnostics: Diagnostic[] };
}

export interface DataSourceHandler {
  typeName: string;
  schema: TfSchema;
  validate(config: TfObject): Diagnostic[];
  read(config: TfObject, ctx: ProviderContext): Promise<{ state: TfObject | null; diagnostics: Diagnostic[] }>;
}

export interface ProviderHandler {
  /** The provider block's schema: endpoint, token (sensitive). */
  schema: TfSchema;
  validate(config: TfObject): Diagnostic[];
  configure(config: TfObject): Promise<{ ctx: ProviderContext | null; diagnostics: Diagnostic[] }>;
  resources: ResourceHandler[];
  dataSources: DataSourceHandler[];
}

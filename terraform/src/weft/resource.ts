/**
 * One handler for every resource the API keeps under PUT/GET/DELETE on an
 * item URL (weft_tenant, and the tenant-scoped identity, workload, service
 * and policy), parameterised by what differs: the document path, the URL
 * parameters that name it, which computed values survive an update.
 */
import type { Diagnostic, ResourceHandler, TfObject } from "../framework.ts";
import { problemOf, send, succeeded, type Answer } from "./client.ts";
import { addressInConfig } from "./config-address.ts";
import { deriveFields, shapeOf, syntheticField, toAttribute, type Field } from "./fields.ts";
import { operation, requestBody, resourceDescription, responseBody } from "./openapi.ts";
import { planChange, type Keeps } from "./plan.ts";
import { problemDiagnostics, type FieldScope } from "./problems.ts";
import { upgradeState } from "./upgrade.ts";
import { validateObject } from "./validate.ts";
import { hasUnknown, objectFromApi, objectToApi, reconcile } from "./values.ts";

export const SCHEMA_VERSION = 1;

export interface ResourceKind {
  typeName: string;
  /** For messages: "identity". */
  noun: string;
  /** The item's path in openapi/openapi.json, e.g. /v1/tenants/{tenant}/identities/{name}. */
  openapiPath: string;
  /** URL parameters → attributes, in the order an import id names them. */
  keys: { parameter: string; attribute: string; description: string }[];
  keeps?: Keeps;
  /**
   * Optional+computed attributes the body leaves out when the configuration
   * does, because the API keeps the current value only then (a service's VIP
   * stays "allocated" only while no VIP is sent).
   */
  omitWhenUnset?: string[];
  /** Said in the resource's description after the document's words. */
  note?: string;
}

const CHANGED_OUTSIDE = "changed outside Terraform: refresh and plan again";

export function itemResource(kind: ResourceKind): ResourceHandler {
  const path = kind.openapiPath;
  const parameters = operation(path, "get").parameters ?? [];
  const keyFields = kind.keys.map((k) => {
    const schema = parameters.find((p) => p.in === "path" && p.name === k.parameter)?.schema;
    const shape = schema ? shapeOf(schema, "input") : undefined;
    return syntheticField(k.attribute, "required", k.description, shape?.kind === "scalar" ? shape.rules : {});
  });
  const keyNames = kind.keys.map((k) => k.attribute);
  const bodyFields = deriveFields(requestBody(path, "put"), responseBody(path, "get", "200"), {
    omit: ["createdAt", "updatedAt", ...keyNames],
  });
  const idField = syntheticField("id", "computed", `"${kind.keys.map((k) => `<${k.attribute}>`).join("/")}", the id terraform import takes`);
  const fields: Field[] = [...keyFields, ...bodyFields, idField];
  const scope: FieldScope = { fields, pathParameters: Object.fromEntries(kind.keys.map((k) => [k.parameter, k.attribute])) };

  const keyValues = (v: TfObject): string[] | null => {
    const values = keyNames.map((a) => v[a]);
    return values.every((x): x is string => typeof x === "string") ? values : null;
  };
  const idOf = (v: TfObject) => keyValues(v)?.join("/") ?? null;
  const urlOf = (v: TfObject) => {
    let url = path;
    kind.keys.forEach((k) => (url = url.replace(`{${k.parameter}}`, encodeURIComponent(String(v[k.attribute])))));
    return url;
  };
  const subject = (v: TfObject) => `${kind.typeName} "${idOf(v) ?? "(not yet known)"}"`;
  const etagOf = (v: TfObject | null) => (typeof v?.etag === "string" ? v.etag : null);

  /** The body of a write: planned values, but what omitWhenUnset names only when configured. */
  const bodyOf = (planned: TfObject, config: TfObject | null) => {
    const value: TfObject = { ...planned };
    for (const a of kind.omitWhenUnset ?? []) if ((config?.[a] ?? null) === null) value[a] = null;
    return objectToApi(bodyFields, value);
  };

  /** State from an answer; `keys` supplies tenant and name, `earlier` what empty collections stood for. */
  const stateOf = (answer: Answer, keys: TfObject, earlier: TfObject | null): TfObject => {
    const body = answer.body as Record<string, unknown>;
    const state = reconcile(bodyFields, objectFromApi(bodyFields, body), earlier);
    for (const a of keyNames) state[a] = keys[a] ?? null;
    state.id = idOf(state);
    if (state.etag === null && answer.etag !== null) state.etag = answer.etag;
    return state;
  };

  const failure = (answer: Answer, v: TfObject, what: string): Diagnostic[] =>
    problemDiagnostics(problemOf(answer), scope, `${what} ${subject(v)}`);

  const handler: ResourceHandler = {
    typeName: kind.typeName,
    schema: {
      version: SCHEMA_VERSION,
      description: [resourceDescription(path, "put"), kind.note].filter(Boolean).join(" "),
      attributes: fields.map(toAttribute),
    },

    validate: (config) => validateObject(fields, config),

    async plan({ prior, proposed, config, ctx, replacing }) {
      if (proposed === null || config === null) return { planned: null, requiresReplace: [], diagnostics: [] };
      const { planned, action, requiresReplace } = planChange(
        { fields, replaceOn: keyNames, keeps: kind.keeps ?? {}, idOf },
        prior,
        proposed,
        config,
      );
      // A value that is not known yet cannot be sent: this plan goes without a dry run.
      if (action === "none" || hasUnknown(config)) return { planned, requiresReplace, diagnostics: [] };
      // A create is tried as apply sends it, with If-None-Match: *, so one made outside Terraform under the
      // same id fails the plan ("already exists"), not the apply. Not on a replacement (-replace, taint):
      // Terraform plans the new object while the old one still exists.
      const precondition: Record<string, string> | undefined =
        action === "update" ? { "if-match": etagOf(prior) ?? "*" } : action === "create" && !replacing ? { "if-none-match": "*" } : undefined;
      const answer = await send(ctx, "PUT", `${urlOf(planned)}?dryRun=true`, {
        body: bodyOf(planned, config),
        ...(precondition ? { headers: precondition } : {}),
      });
      return { planned, requiresReplace, diagnostics: dryRunDiagnostics(answer, planned, action) };
    },

    async apply({ prior, planned, config, ctx }) {
      if (planned === null) {
        if (prior === null) return { state: null, diagnostics: [] };
        const etag = etagOf(prior);
        const answer = await send(ctx, "DELETE", urlOf(prior), etag === null ? {} : { headers: { "if-match": etag } });
        // Already gone is what destroy wanted.
        if (succeeded(answer) || answer.status === 404) return { state: null, diagnostics: [] };
        if (answer.status === 412) return { state: prior, diagnostics: [changedOutside(prior)] };
        return { state: prior, diagnostics: failure(answer, prior, "deleting") };
      }
      const create = prior === null;
      const answer = await send(ctx, "PUT", urlOf(planned), {
        body: bodyOf(planned, config),
        headers: create ? { "if-none-match": "*" } : { "if-match": etagOf(prior) ?? "*" },
      });
      if (succeeded(answer)) return { state: stateOf(answer, planned, planned), diagnostics: [] };
      if (answer.status === 412) return { state: prior, diagnostics: [create ? existsAlready(planned) : changedOutside(planned)] };
      return { state: prior, diagnostics: failure(answer, planned, create ? "creating" : "updating") };
    },

    async read(current, ctx) {
      const answer = await send(ctx, "GET", urlOf(current));
      // Deleted outside Terraform: no state, so the next plan creates it again.
      if (answer.status === 404) return { state: null, diagnostics: [] };
      if (!succeeded(answer)) return { state: current, diagnostics: failure(answer, current, "reading") };
      return { state: stateOf(answer, current, current), diagnostics: [] };
    },

    async importState(id, ctx) {
      const parts = id.split("/");
      const form = keyNames.map((a) => `<${a}>`).join("/");
      const keyed: TfObject = {};
      const bad = parts.length !== keyNames.length ? `it has ${parts.length} part(s)` : undefined;
      keyNames.forEach((a, i) => (keyed[a] = parts[i] ?? null));
      const problems = bad ? [] : validateObject(keyFields, keyed);
      if (bad || problems.length > 0) {
        const why = bad ?? problems.map((d) => d.detail).join("; ");
        return {
          state: null,
          diagnostics: [{ severity: "error", summary: `Invalid import id for ${kind.typeName}`, detail: `expected "${form}" (each a DNS label), got "${id}": ${why}` }],
        };
      }
      const answer = await send(ctx, "GET", urlOf(keyed));
      if (answer.status === 404) {
        return { state: null, diagnostics: [{ severity: "error", summary: `Cannot import ${kind.typeName}: not found`, detail: `${kind.noun} "${id}" not found at ${ctx.endpoint}` }] };
      }
      if (!succeeded(answer)) return { state: null, diagnostics: failure(answer, keyed, "importing") };
      return { state: stateOf(answer, keyed, null), diagnostics: [] };
    },

    upgrade: (version, state) => upgradeState(handler.schema, version, state),
  };

  function changedOutside(v: TfObject): Diagnostic {
    return { severity: "error", summary: `${subject(v)} ${CHANGED_OUTSIDE}`, detail: `The ${kind.noun}'s ETag is no longer ${etagOf(v) ?? "the stored one"}: it was changed outside Terraform since the last refresh.` };
  }
  function existsAlready(v: TfObject): Diagnostic {
    const id = idOf(v) ?? "";
    const name = v[keyNames[keyNames.length - 1]!];
    const address = typeof name === "string" ? addressInConfig(kind.typeName, name) : null;
    const to = address ?? `<the address on the "with" line above>`;
    return {
      severity: "error",
      summary: `${subject(v)} already exists`,
      detail:
        `It was created outside Terraform (or is managed by another state). To manage it from this configuration, import it:\n` +
        `  terraform import ${to} ${id}\n` +
        `or add an import block: import { to = ${to}, id = "${id}" }. Or give this resource another name.`,
    };
  }
  /**
   * What the dry run found, as plan diagnostics. A 404 means the tenant
   * does not exist yet (it is often created by the same apply), and a 422
   * about a named identity, workload or (a traffic policy's target) service
   * may be about one this apply creates:
   * those are not errors of this plan. Nor is a 409 of a new object: the
   * dry run sees the world before this apply, where the object being
   * replaced (a rename keeping its SPIFFE path, say) or one this apply
   * destroys still holds the path, address or VIP; apply checks again.
   */
  function dryRunDiagnostics(answer: Answer, planned: TfObject, action: "create" | "replace" | "update"): Diagnostic[] {
    if (succeeded(answer) || answer.status === 404) return [];
    if (answer.status === 412) return [action === "update" ? changedOutside(planned) : existsAlready(planned)];
    const problem = problemOf(answer);
    if (answer.status === 409 && action !== "update") {
      return problemDiagnostics(problem, scope, `dry run of ${subject(planned)} (checked again at apply, in case this apply frees it)`, "warning");
    }
    if (answer.status === 422 && problem.errors?.length && problem.errors.every((e) => namesManagedResource(e.field))) {
      return problemDiagnostics(problem, scope, `dry run of ${subject(planned)} (checked again at apply, in case this apply creates it)`, "warning");
    }
    return problemDiagnostics(problem, scope, `dry run of ${subject(planned)}`);
  }
  return handler;
}

/** A body field that names another resource this provider can create in the same apply. */
const namesManagedResource = (field: string) => /^body\..*\b(identity|workload)$/.test(field) || field === "body.targetRef.name";


/**
 * RFC 9457 problem documents (api/src/http/problem.ts) → Terraform
 * diagnostics. Pure. Each `{field, message}` entry becomes one diagnostic
 * pointing at the attribute its field names: "body.ports.0.port" (or the
 * pointer "/body/ports/0/port") → ports[0].port, following the field model
 * so that camelCase properties find their snake_case attributes and map
 * keys stay keys.
 */
import type { AttributePath, Diagnostic } from "../framework.ts";
import type { Field, Shape } from "./fields.ts";

export interface Problem {
  title?: string;
  status?: number;
  detail?: string;
  errors?: { field: string; message: string }[];
}

export function isProblem(body: unknown): body is Problem {
  return typeof body === "object" && body !== null && typeof (body as Problem).title === "string";
}

/** Where a problem's field lands: the body by the field model, the URL's parameters by name. */
export interface FieldScope {
  fields: Field[];
  /** URL parameter → attribute, e.g. {tenant: "tenant", name: "name"}; weft_tenant: {tenant: "name"}. */
  pathParameters: Record<string, string>;
}

function stepInto(shape: Shape, segments: string[], path: AttributePath): AttributePath {
  const [head, ...rest] = segments;
  if (head === undefined) return path;
  switch (shape.kind) {
    case "list":
    case "objectList": {
      if (!/^\d+$/.test(head)) return path;
      const at = [...path, { index: Number(head) }];
      return shape.kind === "objectList" ? stepInto(shape.element, rest, at) : at;
    }
    case "map":
      return [...path, { key: head }];
    case "object":
      return walkFields(shape.fields, segments, path);
    default:
      return path;
  }
}

function walkFields(fields: Field[], segments: string[], path: AttributePath): AttributePath {
  const [head, ...rest] = segments;
  const field = fields.find((f) => f.property === head);
  if (!field) return path;
  return stepInto(field.shape, rest, [...path, { attribute: field.attribute }]);
}

/** The attribute a problem field names, or undefined when it names none (query, maps.policy). */
export function attributePathOf(field: string, scope: FieldScope): AttributePath | undefined {
  const segments = field.replace(/^\//, "").split(/[./]/);
  const [where, ...rest] = segments;
  if (where === "body") {
    const path = walkFields(scope.fields, rest, []);
    return path.length > 0 ? path : undefined;
  }
  if (where === "path" || where === "params") {
    const attribute = rest[0] === undefined ? undefined : scope.pathParameters[rest[0]];
    return attribute === undefined ? undefined : [{ attribute }];
  }
  return undefined;
}

/** One diagnostic per bad field, or one for the whole problem; `subject` says which resource and call. */
export function problemDiagnostics(problem: Problem, scope: FieldScope, subject: string, severity: Diagnostic["severity"] = "error"): Diagnostic[] {
  const summary = problem.title ?? `HTTP ${problem.status ?? "error"}`;
  const detail = `${subject}: ${problem.detail ?? summary}`;
  if (!problem.errors || problem.errors.length === 0) return [{ severity, summary, detail }];
  return problem.errors.map((e) => {
    const attribute = attributePathOf(e.field, scope);
    // Named as the configuration names it: Terraform places a nested path only at its top-level attribute.
    const where = attribute ? pathText(attribute) : e.field;
    return { severity, summary, detail: `${detail}\n${where}: ${e.message}`, ...(attribute ? { attribute } : {}) };
  });
}

/** [ports, 0, target_port] → "ports[0].target_port", as HCL would address it. */
export function pathText(path: AttributePath): string {
  return path
    .map((s, i) => ("attribute" in s ? `${i === 0 ? "" : "."}${s.attribute}` : "index" in s ? `[${s.index}]` : `[${JSON.stringify(s.key)}]`))
    .join("");
}

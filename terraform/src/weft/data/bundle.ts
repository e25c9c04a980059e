/**
 * weft_bundle: a tenant's SPIFFE trust bundle, as PEM and as the JWK set.
 * Both bundle routes are public, so any token (or none) reads them.
 */
import type { DataSourceHandler, TfObject } from "../../framework.ts";
import { problemOf, send, succeeded, type Answer } from "../client.ts";
import { shapeOf, syntheticField, toAttribute, type Field } from "../fields.ts";
import { operation, responseBody, responseDescription } from "../openapi.ts";
import { problemDiagnostics } from "../problems.ts";
import { validateObject } from "../validate.ts";

const JWKS = "/v1/tenants/{tenant}/bundle";
const PEM = "/v1/tenants/{tenant}/bundle.pem";

/** A computed attribute described by the document. */
function answered(attribute: string, type: "string" | "number", description: string): Field {
  return { ...syntheticField(attribute, "computed", description), shape: { kind: "scalar", type, rules: {} } };
}

export function bundleDataSource(): DataSourceHandler {
  const bundle = responseBody(JWKS, "get", "200").properties ?? {};
  const param = operation(JWKS, "get").parameters?.find((p) => p.name === "tenant")?.schema;
  const tenantShape = param ? shapeOf(param, "input") : undefined;
  const fields: Field[] = [
    syntheticField("tenant", "required", "The tenant whose trust bundle this is (a DNS label)", tenantShape?.kind === "scalar" ? tenantShape.rules : {}),
    answered("pem", "string", `${responseDescription(PEM, "get", "200") ?? "CA certificates, PEM"}: ${operation(PEM, "get").summary ?? ""}`),
    answered("jwks", "string", `${operation(JWKS, "get").summary ?? "The SPIFFE bundle"}, as a JSON string (jsondecode() reads it)`),
    answered("sequence", "number", bundle.spiffe_sequence?.description ?? "spiffe_sequence"),
    answered("refresh_hint", "number", bundle.spiffe_refresh_hint?.description ?? "spiffe_refresh_hint"),
  ];
  const scope = { fields, pathParameters: { tenant: "tenant" } };
  const failed = (answer: Answer, tenant: string) =>
    answer.status === 404
      ? [{ severity: "error" as const, summary: "weft_bundle: not found", detail: `tenant "${tenant}" not found`, attribute: [{ attribute: "tenant" }] }]
      : problemDiagnostics(problemOf(answer), scope, `reading weft_bundle "${tenant}"`);

  return {
    typeName: "weft_bundle",
    schema: { version: 0, description: "A tenant's SPIFFE trust bundle: its CA certificates as PEM and its JWK set.", attributes: fields.map(toAttribute) },
    validate: (config) => validateObject(fields, config),
    async read(config, ctx) {
      const tenant = String(config.tenant);
      const at = (path: string) => path.replace("{tenant}", encodeURIComponent(tenant));
      const jwks = await send(ctx, "GET", at(JWKS));
      if (!succeeded(jwks)) return { state: null, diagnostics: failed(jwks, tenant) };
      const pem = await send(ctx, "GET", at(PEM));
      if (!succeeded(pem)) return { state: null, diagnostics: failed(pem, tenant) };
      const body = jwks.body as { spiffe_sequence?: number; spiffe_refresh_hint?: number };
      const state: TfObject = {
        tenant,
        pem: pem.text,
        jwks: JSON.stringify(jwks.body),
        sequence: body.spiffe_sequence ?? null,
        refresh_hint: body.spiffe_refresh_hint ?? null,
      };
      return { state, diagnostics: [] };
    },
  };
}

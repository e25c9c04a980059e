/**
 * The Weft provider: its configuration (endpoint, token) and the resources
 * and data sources it serves. terraform/src/main.ts hands this to the
 * plugin protocol layer.
 */
import { UNKNOWN, type Diagnostic, type ProviderHandler, type TfObject } from "../framework.ts";
import { weftContext } from "./client.ts";
import { bundleDataSource } from "./data/bundle.ts";
import { nodeDataSource } from "./data/node.ts";
import { identityResource } from "./resources/identity.ts";
import { joinTokenResource } from "./resources/join-token.ts";
import { policyResource } from "./resources/policy.ts";
import { serviceResource } from "./resources/service.ts";
import { tenantResource } from "./resources/tenant.ts";
import { workloadResource } from "./resources/workload.ts";

export const DEFAULT_ENDPOINT = "http://127.0.0.1:8080";

function endpointProblem(endpoint: string): string | null {
  try {
    const url = new URL(endpoint);
    return url.protocol === "http:" || url.protocol === "https:" ? null : `"${endpoint}" is not an http(s) URL`;
  } catch {
    return `"${endpoint}" is not a URL`;
  }
}

const setting = (config: TfObject, attribute: string, env: string): string | null | typeof UNKNOWN => {
  const v = config[attribute];
  if (v === UNKNOWN) return UNKNOWN;
  if (typeof v === "string") return v;
  const fromEnv = process.env[env];
  return fromEnv === undefined || fromEnv === "" ? null : fromEnv;
};

export function weftProvider(): ProviderHandler {
  return {
    schema: {
      version: 0,
      description: "Weft, a sidecarless service-mesh control plane: tenants, SPIFFE identities, workloads, services and policies.",
      attributes: [
        { name: "endpoint", type: "string", optional: true, description: `The Weft API's base URL. Default: the environment variable WEFT_ENDPOINT, else ${DEFAULT_ENDPOINT}.` },
        {
          name: "token",
          type: "string",
          optional: true,
          sensitive: true,
          description: "Bearer token: the operator token (weft_tenant, weft_join_token, weft_node need it) or a tenant token with the write scope. Default: the environment variable WEFT_TOKEN.",
        },
      ],
    },

    validate(config) {
      const endpoint = config.endpoint;
      const problem = typeof endpoint === "string" ? endpointProblem(endpoint) : null;
      return problem ? [{ severity: "error", summary: "Invalid endpoint", detail: problem, attribute: [{ attribute: "endpoint" }] }] : [];
    },

    async configure(config) {
      const endpoint = setting(config, "endpoint", "WEFT_ENDPOINT") ?? DEFAULT_ENDPOINT;
      const token = setting(config, "token", "WEFT_TOKEN");
      const diagnostics: Diagnostic[] = [];
      for (const [attribute, v] of [["endpoint", endpoint], ["token", token]] as const) {
        if (v === UNKNOWN) {
          diagnostics.push({ severity: "error", summary: `The provider's ${attribute} is not known yet`, detail: "It depends on a value known only after apply; give it directly or through the environment.", attribute: [{ attribute }] });
        }
      }
      if (endpoint !== UNKNOWN) {
        const problem = endpointProblem(endpoint);
        if (problem) diagnostics.push({ severity: "error", summary: "Invalid endpoint", detail: problem, attribute: [{ attribute: "endpoint" }] });
      }
      if (diagnostics.length > 0 || endpoint === UNKNOWN || token === UNKNOWN) return { ctx: null, diagnostics };
      return { ctx: weftContext(endpoint, token), diagnostics: [] };
    },

    resources: [tenantResource(), identityResource(), workloadResource(), serviceResource(), policyResource(), joinTokenResource()],
    dataSources: [bundleDataSource(), nodeDataSource()],
  };
}

/**
 * The Weft provider: its configuration (endpoint, token) and the resources
 * and data sources it serves. terraform/src/main.ts hands this to the
 * plugin protocol layer.
 */
import { readFileSync } from "node:fs";
import { UNKNOWN, type Diagnostic, type ProviderHandler, type TfObject } from "../framework.ts";
import { weftContext } from "./client.ts";
import { bundleDataSource } from "./data/bundle.ts";
import { nodeDataSource } from "./data/node.ts";
import { httpRouteResource } from "./resources/http-route.ts";
import { identityResource } from "./resources/identity.ts";
import { joinTokenResource } from "./resources/join-token.ts";
import { policyResource } from "./resources/policy.ts";
import { serviceResource } from "./resources/service.ts";
import { tenantResource } from "./resources/tenant.ts";
import { trafficPolicyResource } from "./resources/traffic-policy.ts";
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

/** The CA to trust for the API: ca_pem, else the file named by ca_file (or WEFT_CA_FILE), else none (the system's roots). */
function trustedCa(caFile: string | null, caPem: string | null): { pem: string | null } | { problem: Diagnostic } {
  const fromFile = caPem === null && caFile !== null;
  let pem = caPem;
  if (fromFile) {
    try {
      pem = readFileSync(caFile, "utf8");
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      return { problem: { severity: "error", summary: "Cannot read ca_file", detail: `${caFile}: ${why}`, attribute: [{ attribute: "ca_file" }] } };
    }
  }
  if (pem !== null && !/-----BEGIN CERTIFICATE-----/.test(pem)) {
    const attribute = fromFile ? "ca_file" : "ca_pem";
    return { problem: { severity: "error", summary: `Invalid ${attribute}`, detail: "It holds no PEM certificate (-----BEGIN CERTIFICATE-----).", attribute: [{ attribute }] } };
  }
  return { pem };
}

export function weftProvider(): ProviderHandler {
  return {
    schema: {
      version: 0,
      description: "Weft, a sidecarless service-mesh control plane: tenants, SPIFFE identities, workloads, services and policies.",
      attributes: [
        { name: "endpoint", type: "string", optional: true, description: `The Weft API's base URL. Default: the environment variable WEFT_ENDPOINT, else ${DEFAULT_ENDPOINT}.` },
        {
          name: "ca_file",
          type: "string",
          optional: true,
          description: "A PEM file of the CA the API's https certificate must chain to (the operator CA: operator-ca.pem beside the API's data directory, or GET /v1/system/ca checked out of band). Default: the environment variable WEFT_CA_FILE, else the system's roots.",
        },
        {
          name: "ca_pem",
          type: "string",
          optional: true,
          description: "The same CA as PEM text, instead of ca_file.",
        },
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
      const diagnostics: Diagnostic[] = problem ? [{ severity: "error", summary: "Invalid endpoint", detail: problem, attribute: [{ attribute: "endpoint" }] }] : [];
      if (typeof config.ca_file === "string" && typeof config.ca_pem === "string") {
        diagnostics.push({ severity: "error", summary: "ca_file and ca_pem exclude each other", detail: "Give the operator CA as a file or as PEM text, not both.", attribute: [{ attribute: "ca_pem" }] });
      }
      return diagnostics;
    },

    async configure(config) {
      const endpoint = setting(config, "endpoint", "WEFT_ENDPOINT") ?? DEFAULT_ENDPOINT;
      const token = setting(config, "token", "WEFT_TOKEN");
      const caFile = setting(config, "ca_file", "WEFT_CA_FILE");
      const caPem = config.ca_pem === UNKNOWN ? UNKNOWN : typeof config.ca_pem === "string" ? config.ca_pem : null;
      const diagnostics: Diagnostic[] = [];
      for (const [attribute, v] of [["endpoint", endpoint], ["token", token], ["ca_file", caFile], ["ca_pem", caPem]] as const) {
        if (v === UNKNOWN) {
          diagnostics.push({ severity: "error", summary: `The provider's ${attribute} is not known yet`, detail: "It depends on a value known only after apply; give it directly or through the environment.", attribute: [{ attribute }] });
        }
      }
      if (endpoint !== UNKNOWN) {
        const problem = endpointProblem(endpoint);
        if (problem) diagnostics.push({ severity: "error", summary: "Invalid endpoint", detail: problem, attribute: [{ attribute: "endpoint" }] });
      }
      if (diagnostics.length > 0 || endpoint === UNKNOWN || token === UNKNOWN || caFile === UNKNOWN || caPem === UNKNOWN) return { ctx: null, diagnostics };
      const ca = trustedCa(caFile, caPem);
      if ("problem" in ca) return { ctx: null, diagnostics: [ca.problem] };
      return { ctx: weftContext(endpoint, token, ca.pem), diagnostics: [] };
    },

    resources: [tenantResource(), identityResource(), workloadResource(), serviceResource(), policyResource(), joinTokenResource(), httpRouteResource(), trafficPolicyResource()],
    dataSources: [bundleDataSource(), nodeDataSource()],
  };
}

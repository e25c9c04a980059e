// Framework diagnostics and attribute paths as protocol messages.
import type { AttributePath, Diagnostic } from "../framework.ts";
import { ValueError } from "./codec.ts";

export interface WireStep {
  attribute_name?: string;
  element_key_string?: string;
  element_key_int?: number;
}
export interface WireAttributePath {
  steps: WireStep[];
}
export interface WireDiagnostic {
  severity: "ERROR" | "WARNING";
  summary: string;
  detail: string;
  attribute?: WireAttributePath;
}

export function toWirePath(path: AttributePath): WireAttributePath {
  return {
    steps: path.map((s): WireStep => {
      if ("attribute" in s) return { attribute_name: s.attribute };
      if ("index" in s) return { element_key_int: s.index };
      return { element_key_string: s.key };
    }),
  };
}

export function toWireDiagnostic(d: Diagnostic): WireDiagnostic {
  const out: WireDiagnostic = {
    severity: d.severity === "warning" ? "WARNING" : "ERROR",
    summary: d.summary,
    detail: d.detail ?? "",
  };
  // An empty path would point at nothing; Terraform then names the block.
  if (d.attribute && d.attribute.length > 0) out.attribute = toWirePath(d.attribute);
  return out;
}

export const hasErrors = (diags: readonly Diagnostic[]): boolean => diags.some((d) => d.severity === "error");

export const errorDiagnostic = (summary: string, detail?: string, attribute?: AttributePath): Diagnostic => ({
  severity: "error",
  summary,
  ...(detail === undefined ? {} : { detail }),
  ...(attribute === undefined ? {} : { attribute }),
});

/** Anything a handler or the codec threw, as one error diagnostic. */
export function diagnosticFromError(summary: string, e: unknown): Diagnostic {
  if (e instanceof ValueError) return errorDiagnostic(summary, e.message, e.path);
  return errorDiagnostic(summary, e instanceof Error ? e.message : String(e));
}

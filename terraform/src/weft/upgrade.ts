/**
 * Stored state of an older schema version → the current one. Version 0
 * (the provider before its schemas were derived from the document) stored
 * the same attributes, so it upgrades as is.
 */
import type { Diagnostic, TfObject, TfSchema, TfValue } from "../framework.ts";

export function upgradeState(schema: TfSchema, version: number, state: Record<string, unknown>): { state: TfObject; diagnostics: Diagnostic[] } {
  if (version < 0 || version > schema.version) {
    return {
      state: {},
      diagnostics: [
        {
          severity: "error",
          summary: "Unsupported state version",
          detail: `this provider reads state of schema versions 0 to ${schema.version}, got ${version}; use the provider version that wrote it`,
        },
      ],
    };
  }
  // Only the schema's attributes, each present: attributes added since are null.
  const upgraded: TfObject = {};
  for (const a of schema.attributes) upgraded[a.name] = (state[a.name] ?? null) as TfValue;
  return { state: upgraded, diagnostics: [] };
}

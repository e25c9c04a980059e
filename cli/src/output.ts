/** The three output formats of `-o`: an aligned table (one row per item), JSON, YAML. */
import { stringify } from "yaml";
import type { Column } from "./kinds.ts";
import { printable } from "./printable.ts";

export const FORMATS = ["table", "json", "yaml"] as const;
export type Format = (typeof FORMATS)[number];


/** Rows under headers, columns padded to their widest cell; nothing at all for no rows but the headers. */
export function table(columns: readonly Column[], items: readonly Record<string, unknown>[]): string {
  const rows = [columns.map((c) => c.header), ...items.map((i) => columns.map((c) => oneLine(c.value(i))))];
  const widths = columns.map((_, j) => Math.max(...rows.map((r) => r[j]!.length)));
  return rows.map((r) => r.map((cell, j) => (j === r.length - 1 ? cell : cell.padEnd(widths[j]!))).join("   ").trimEnd()).join("\n") + "\n";
}

const oneLine = (s: string): string => printable(s.replace(/\s+/g, " "));

export function render(format: Exclude<Format, "table">, value: unknown): string {
  return format === "json" ? `${JSON.stringify(value, null, 2)}\n` : stringify(value);
}

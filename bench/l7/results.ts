/** bench/l7/results/<file> (git-ignored): what a run measured, with when. */
import { mkdirSync, writeFileSync } from "node:fs";

export function writeResults(file: string, fields: Record<string, unknown>): void {
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(new URL(`./results/${file}`, import.meta.url), `${JSON.stringify({ at: new Date().toISOString(), ...fields }, null, 2)}\n`);
}

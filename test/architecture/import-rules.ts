import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, posix, relative } from "node:path";

/**
 * What each part of Weft must never import. The flow is one way: REST ->
 * Postgres -> compiler -> agent -> codec -> kernel; parts meet through the
 * OpenAPI document, the C ABI and the shared packages, never through another
 * part's internals.
 */
export interface ImportRule {
  /** Files the rule binds: a folder, repo-relative, with a trailing '/'. */
  part: string;
  why: string;
  /** Repo-relative folders (trailing '/') or bare package names it must not import. */
  never: string[];
}

export const IMPORT_RULES: ImportRule[] = [
  {
    part: "api/src/compiler/",
    why: "the compiler is pure: rows in, entries out",
    never: [
      "api/src/db/",
      "api/src/http/",
      "api/src/routes/",
      "api/src/services/",
      "api/src/auth/",
      "api/src/follower/",
      "api/src/mesh/",
      "fastify",
      "drizzle-orm",
      "pg",
      "@electric-sql/pglite",
    ],
  },
  {
    part: "api/src/follower/",
    why: "the follower answers refusals as values; the HTTP layer turns them into problems",
    never: ["api/src/http/", "api/src/routes/"],
  },
  {
    part: "api/src/mesh/",
    why: "the domain refuses with its own values (mesh/refusal.ts) and takes its own input shapes (mesh/specs.ts); the HTTP layer turns refusals into problems",
    never: ["api/src/http/", "api/src/routes/"],
  },
  {
    part: "api/src/ca/",
    why: "the CA throws its own errors (ca/errors.ts); the routes turn them into problems",
    never: ["api/src/http/", "api/src/routes/"],
  },
  { part: "api/", why: "the API reaches agents and Terraform only through its document", never: ["nodeagent/", "terraform/"] },
  { part: "nodeagent/", why: "the agent is a client of the API's document, not of its code", never: ["api/", "terraform/"] },
  { part: "terraform/", why: "the provider is a client of the API's document, not of its code", never: ["api/", "nodeagent/"] },
  { part: "cli/", why: "the weft command is a client of the API's document (cli/src/routes.ts, checked against it), not of its code", never: ["api/", "nodeagent/", "terraform/"] },
  { part: "wasm/pkg/", why: "the codec knows only the ABI", never: ["api/", "nodeagent/", "terraform/", "packages/", "fastify", "drizzle-orm", "pg"] },
  { part: "packages/", why: "shared packages are leaves", never: ["api/", "nodeagent/", "terraform/"] },
];

const SPECIFIER = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|(?:^|[\s;])import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The module specifiers a source text imports (static, side-effect and dynamic imports, re-exports). */
export function specifiersOf(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(SPECIFIER)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

/** A specifier as the rules name it: a repo-relative path for a relative import, else the package name. */
export function targetOf(file: string, specifier: string): string {
  if (specifier.startsWith(".")) return posix.normalize(posix.join(posix.dirname(file), specifier));
  const parts = specifier.replace(/^node:/, "node:").split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}

const hits = (target: string, forbidden: string): boolean =>
  forbidden.endsWith("/") ? target.startsWith(forbidden) || `${target}/` === forbidden : target === forbidden;

/** Every broken rule in one file's source, as "file: imports X (part never imports Y: why)". */
export function violationsIn(file: string, source: string, rules: ImportRule[] = IMPORT_RULES): string[] {
  const out: string[] = [];
  for (const rule of rules) {
    if (!file.startsWith(rule.part)) continue;
    for (const specifier of specifiersOf(source)) {
      const target = targetOf(file, specifier);
      const forbidden = rule.never.find((f) => hits(target, f) && !target.startsWith(rule.part));
      if (forbidden) out.push(`${file}: imports ${specifier} (${rule.part} never imports ${forbidden}: ${rule.why})`);
    }
  }
  return out;
}

const SOURCE = /\.(ts|mts|js|mjs)$/;

/** Repo-relative source files under a folder, skipping node_modules and build output. */
export function sourcesUnder(root: string, folder: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name === "node_modules" || entry.name === "dist" || entry.name === "build") continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (SOURCE.test(entry.name) && !entry.name.endsWith(".d.ts")) out.push(relative(root, path).split("\\").join("/"));
    }
  };
  walk(join(root, folder));
  return out;
}

export function violationsInRepo(root: string): string[] {
  const parts = [...new Set(IMPORT_RULES.map((r) => r.part.split("/")[0]!))];
  return parts.flatMap((top) => sourcesUnder(root, top)).flatMap((file) => violationsIn(file, readFileSync(join(root, file), "utf8")));
}

export const repoRoot = (): string => dirname(dirname(dirname(new URL(import.meta.url).pathname)));

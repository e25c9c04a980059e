/**
 * The address of the resource block that declares an object, read from the
 * root module's .tf files, for messages that must name it ("terraform
 * import weft_identity.web acme/web"): Terraform never tells a provider the
 * address of the resource it plans. Terraform starts the provider in the
 * root module's directory (after -chdir), so that is where it looks. Only a
 * literal `name = "..."` among the block's own attributes counts, and only
 * when exactly one block of the type has it; otherwise null, and the
 * message says where Terraform shows the address instead.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const BLOCK = /^resource\s+"([A-Za-z0-9_]+)"\s+"([A-Za-z0-9_-]+)"\s*\{/gm;

/** Each resource block of a file: type, label and its body, up to the brace that closes it. */
function resourceBlocks(text: string): { type: string; label: string; body: string }[] {
  const blocks: { type: string; label: string; body: string }[] = [];
  for (const m of text.matchAll(BLOCK)) {
    let depth = 1;
    let i = m.index + m[0].length;
    let quoted = false;
    for (; i < text.length && depth > 0; i++) {
      const c = text[i];
      if (quoted) {
        if (c === "\\") i++;
        else if (c === '"') quoted = false;
      } else if (c === '"') quoted = true;
      else if (c === "{") depth++;
      else if (c === "}") depth--;
    }
    blocks.push({ type: m[1]!, label: m[2]!, body: text.slice(m.index + m[0].length, i - 1) });
  }
  return blocks;
}

/** The block's own `name = "literal"`: the least indented one (nested objects sit deeper). */
function literalName(body: string): string | null {
  let best: { indent: number; value: string } | null = null;
  for (const m of body.matchAll(/^([ \t]*)name\s*=\s*"([^"$%\\]*)"\s*(?:#.*)?$/gm)) {
    if (best === null || m[1]!.length < best.indent) best = { indent: m[1]!.length, value: m[2]! };
  }
  return best?.value ?? null;
}

export function addressInConfig(typeName: string, name: string, dir = process.cwd()): string | null {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".tf"));
  } catch {
    return null;
  }
  const matches = files.flatMap((f) => {
    let text: string;
    try {
      text = readFileSync(join(dir, f), "utf8");
    } catch {
      return [];
    }
    return resourceBlocks(text).filter((b) => b.type === typeName && literalName(b.body) === name);
  });
  return matches.length === 1 ? `${typeName}.${matches[0]!.label}` : null;
}

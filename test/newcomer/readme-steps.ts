/**
 * The steps a newcomer takes, read from README.md itself so that the README
 * as edited is what gets tested. A fenced block is run when an HTML comment
 * just before it says so:
 *
 *   <!-- newcomer-test: run -->
 *   <!-- newcomer-test: run, except `npm test` (why, for the reader) -->
 *
 * Each command of a marked block is one step: a line, with its backslash
 * continuations and its here-document. Lines named after "except" are not
 * run; an "except" naming no line of its block is an error, so that the
 * marker and its block cannot drift apart silently.
 */

export interface ReadmeStep {
  /** 1-based line of README.md where the command starts. */
  line: number;
  /** What the shell runs: the command as written, comments and continuations included. */
  script: string;
  /** The command without its comment, on one line: how the step is named. */
  code: string;
  /** The command ends in `&`: it leaves something running. */
  background: boolean;
  /** Variables the command assigns at top level (`A=... B=...`, `export A=...`). */
  assigns: string[];
}

const MARKER = /^<!--\s*newcomer-test:\s*run\b(.*?)-->\s*$/;
const FENCE = /^(```|~~~)/;
const HEREDOC = /<<(-?)\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\2/;

/** The steps of every marked block, in document order; throws on a malformed marker. */
export function readmeSteps(readme: string): ReadmeStep[] {
  const lines = readme.split("\n");
  const steps: ReadmeStep[] = [];
  let marked = 0;
  for (let i = 0; i < lines.length; i++) {
    const marker = MARKER.exec(lines[i]!.trim());
    if (!marker) continue;
    marked++;
    const except = [...marker[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.trim());
    let open = i + 1;
    while (open < lines.length && lines[open]!.trim() === "") open++;
    const fence = FENCE.exec(lines[open]?.trim() ?? "");
    if (!fence) throw new Error(`README.md:${i + 1}: a newcomer-test marker must come just before a fenced block`);
    let close = open + 1;
    while (close < lines.length && !lines[close]!.trim().startsWith(fence[1]!)) close++;
    if (close === lines.length) throw new Error(`README.md:${open + 1}: the block marked at line ${i + 1} is never closed`);
    const block = blockSteps(lines.slice(open + 1, close), open + 2);
    for (const name of except) {
      if (!block.some((s) => s.code === name)) throw new Error(`README.md:${i + 1}: the marker excepts \`${name}\`, which its block does not contain`);
    }
    steps.push(...block.filter((s) => !except.includes(s.code)));
    i = close;
  }
  if (marked === 0) throw new Error("README.md marks no block with <!-- newcomer-test: run -->");
  return steps;
}

/** Splits a block's lines (the first being README line `firstLine`) into commands. */
export function blockSteps(lines: string[], firstLine: number): ReadmeStep[] {
  const steps: ReadmeStep[] = [];
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    if (lines[i]!.trim() === "" || lines[i]!.trim().startsWith("#")) continue;
    const parts = [lines[i]!];
    while (/\\$/.test(codeOf(parts.at(-1)!)) && i + 1 < lines.length) parts.push(lines[++i]!);
    const code = parts.map((p) => codeOf(p).replace(/\\$/, "").trim()).join(" ");
    const heredoc = HEREDOC.exec(code);
    if (heredoc) {
      const end = heredoc[1] === "-" ? (l: string) => l.replace(/^\t+/, "") === heredoc[3] : (l: string) => l === heredoc[3];
      while (i + 1 < lines.length && !end(lines[i]!)) parts.push(lines[++i]!);
      if (!end(lines[i]!)) throw new Error(`README.md:${firstLine + start}: here-document ${heredoc[3]} is never closed`);
    }
    steps.push({ line: firstLine + start, script: parts.join("\n"), code, background: /(^|[^&])&$/.test(code), assigns: assignedNames(code) });
  }
  return steps;
}

/** The line without its shell comment (a `#` starting a word outside quotes). */
export function codeOf(line: string): string {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === "\\" && quote === '"') i++;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === "\\") i++;
    else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]!))) return line.slice(0, i).trimEnd();
  }
  return line.trimEnd();
}

/** Names assigned by the command's leading words: `A=1 B=$(cmd)`, `export A=1 B=2`; none for `A=1 cmd`. */
export function assignedNames(code: string): string[] {
  let p = 0;
  const exported = /^export\s+/.exec(code);
  if (exported) p = exported[0].length;
  const names: string[] = [];
  for (;;) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(code.slice(p));
    if (!m) break;
    names.push(m[1]!);
    p = endOfWord(code, p + m[0].length);
    while (p < code.length && /\s/.test(code[p]!)) p++;
  }
  return p >= code.length || exported ? names : [];
}

/** Where the shell word starting at `p` ends: quotes, `$(...)`, `${...}` and backquotes nest. */
function endOfWord(code: string, p: number): number {
  const closing: string[] = [];
  for (; p < code.length; p++) {
    const c = code[p]!;
    const inner = closing.at(-1);
    if (inner === "'" ) {
      if (c === "'") closing.pop();
      continue;
    }
    if (c === "\\") p++;
    else if (inner !== undefined && c === inner) closing.pop();
    else if (c === "'" && inner !== '"') closing.push("'");
    else if (c === '"') closing.push('"');
    else if (c === "`") closing.push("`");
    else if (c === "$" && (code[p + 1] === "(" || code[p + 1] === "{")) closing.push(code[++p] === "(" ? ")" : "}");
    else if (inner === ")" && c === "(") closing.push(")");
    else if (inner === undefined && /\s/.test(c)) return p;
  }
  return p;
}

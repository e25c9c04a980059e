/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and says where a server's CPU
 * went per request, over windows of the run only (the measured rounds of one
 * read): the weft server's start (migrations, PGlite) and the warm-up would
 * otherwise drown the hot path. Window bounds are process.hrtime in µs, the
 * clock V8 stamps samples with.
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Sampled µs that were not idle, per request. */
  busyUsPerRequest: number;
  /** [function at file:line, µs per request], every function sampled, most expensive first. */
  selfTop: [string, number][];
  /** [area, µs per request]: self time grouped by package or by our source directory. */
  areas: [string, number][];
}

/** Where a frame's code lives: a package, a directory of ours, or V8's pseudo-frames. */
function areaOf(url: string, name: string): string {
  if (url === "") return name.startsWith("(") ? name : "(native)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return pkg;
  if (url.startsWith("node:")) return "node:" + url.slice(5).split("/")[0];
  const ours = /\/(api\/src\/[^/]+(?:\/[^/]+)?|bench\/[^/]+)\//.exec(url)?.[1];
  return ours ?? url.split("/").slice(-2).join("/");
}

const frameName = (n: ProfileNode) => {
  const file = n.callFrame.url.replace(/^.*\/(node_modules\/|api\/src\/|bench\/)/, "$1");
  return `${n.callFrame.functionName || "(anonymous)"} ${file}:${n.callFrame.lineNumber + 1}`;
};

export interface Window {
  fromUs: number;
  toUs: number;
}

export function summarize(path: string, windows: Window[], requests: number): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // Each sample's time is the delta to the next one: the stack sampled ran for that long.
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    if (!windows.some((w) => t >= w.fromUs && t < w.toUs)) continue;
    selfUs.set(profile.samples[i]!, (selfUs.get(profile.samples[i]!) ?? 0) + dt);
  }
  const fns = new Map<string, number>();
  const areas = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    if (node.callFrame.functionName === "(idle)") continue;
    busy += us;
    const name = frameName(node);
    fns.set(name, (fns.get(name) ?? 0) + us);
    const area = areaOf(node.callFrame.url, node.callFrame.functionName);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  const perRequest = (m: Map<string, number>) =>
    [...m].map(([k, us]) => [k, us / requests] as [string, number]).sort((a, b) => b[1] - a[1]);
  return { busyUsPerRequest: busy / requests, selfTop: perRequest(fns), areas: perRequest(areas) };
}

export function formatSummary(label: string, s: ProfileSummary, top = 25): string {
  const lines = [`${label}: ${s.busyUsPerRequest.toFixed(1)} µs sampled (not idle) per request`, "  by area (self time, µs/request):"];
  for (const [area, us] of s.areas.filter(([, us]) => us >= 0.05)) lines.push(`    ${us.toFixed(2).padStart(7)}  ${area}`);
  lines.push("  top functions (self time, µs/request):");
  for (const [fn, us] of s.selfTop.slice(0, top)) lines.push(`    ${us.toFixed(2).padStart(7)}  ${fn}`);
  return lines.join("\n");
}

/**
 * Where one server spends more than the other per request, function by
 * function: for Weft against bare Fastify this is the price of Weft's own
 * work, with the HTTP machinery both share cancelled out.
 */
export function formatDifference(label: string, more: ProfileSummary, less: ProfileSummary, top = 25): string {
  const other = new Map(less.selfTop);
  const mine = new Map(more.selfTop);
  const rows = [...new Set([...mine.keys(), ...other.keys()])]
    .map((fn) => [fn, (mine.get(fn) ?? 0) - (other.get(fn) ?? 0)] as const)
    .sort((a, b) => b[1] - a[1]);
  const theirs = new Map(less.areas);
  const ours = new Map(more.areas);
  const byArea = [...new Set([...ours.keys(), ...theirs.keys()])]
    .map((a) => [a, (ours.get(a) ?? 0) - (theirs.get(a) ?? 0)] as const)
    .sort((a, b) => b[1] - a[1]);
  const lines = [`${label}: ${(more.busyUsPerRequest - less.busyUsPerRequest).toFixed(1)} µs more per request`, "  by area (µs/request):"];
  for (const [area, us] of byArea.filter(([, us]) => Math.abs(us) >= 0.1)) lines.push(`    ${us.toFixed(2).padStart(7)}  ${area}`);
  lines.push("  the largest differences by function (µs/request):");
  for (const [fn, us] of rows.slice(0, top)) lines.push(`    ${us.toFixed(2).padStart(7)}  ${fn}`);
  return lines.join("\n");
}

// Also usable on its own: tsx bench/api/profile.ts file.cpuprofile fromUs toUs requests
if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, from, to, requests] = process.argv.slice(2);
  if (!file || !requests) {
    console.error("usage: profile.ts file.cpuprofile fromUs toUs requests");
    process.exit(2);
  }
  console.log(formatSummary(file, summarize(file, [{ fromUs: Number(from), toUs: Number(to) }], Number(requests))));
}

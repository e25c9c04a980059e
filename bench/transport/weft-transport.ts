/**
 * Mode "weft" of bench:transport against the interfaces of issue #18's
 * wiring: a policy rule with `transport: "mtls"`, each agent spawning its
 * node's transport (nodeagent/src/transport/main.ts), GET
 * /v1/nodes/{node}/transport naming the remote workload, and the datapath
 * counting packets it steered (reason `steered`). Each check answers why the
 * mode cannot run when it cannot, so the bench says so and measures the
 * other modes; nothing is ever measured as "weft" that the kernel did not
 * steer through the transports.
 */
import { readdirSync, readFileSync } from "node:fs";
import { datapathPackets, type Cluster } from "../support/cluster.ts";
import { commandOf } from "../support/netns.ts";
import { http } from "../support/weft.ts";

/** "400 body.ingress.0.transport is not a known field": a problem+json answer in a line. */
export function problemText(status: number, body: string): string {
  try {
    const p = JSON.parse(body) as { detail?: string; errors?: { field: string; message: string }[] };
    return `${status} ${p.errors?.length ? p.errors.map((e) => `${e.field} ${e.message}`).join("; ") : (p.detail ?? "")}`;
  } catch {
    return `${status} ${body.slice(0, 200)}`;
  }
}

/** Every process below `pid` (children, grandchildren, ...), from the parent pids in /proc. */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      parentOf.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    for (const [child, parent] of parentOf) {
      if (parent === p) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}

/** The transport process the node's agent spawned, or null. */
export function transportPid(c: Cluster, node: string): number | null {
  const agent = c.nodes[node]?.agent;
  if (!agent) return null;
  return descendants(agent.pid).find((p) => /transport\/main\.[cm]?[jt]s/.test(commandOf(p))) ?? null;
}

/** Packets the node's datapath counted as steered into its transport, all hooks. */
export async function steeredPackets(c: Cluster, node: string): Promise<number> {
  const counts = datapathPackets(await c.agentMetrics(node));
  return Object.entries(counts).reduce((sum, [key, n]) => (key.endsWith("/steered") ? sum + n : sum), 0);
}

/** The transport's drop and pass counts and its own non-zero counters on every node ("node-a egress/steered 12, ..."): what a failed weft run says. */
export async function transportCounts(c: Cluster): Promise<string> {
  const parts: string[] = [];
  for (const node of Object.keys(c.nodes)) {
    const metrics = await c.agentMetrics(node);
    for (const [key, n] of Object.entries(datapathPackets(metrics))) if (n > 0 && /\/(steered|mtls-required|transport-down)$/.test(key)) parts.push(`${node} ${key} ${n}`);
    // The transport's own counters on the agent's /metrics (connections, streams, handshake failures by reason), those not zero.
    for (const m of metrics.matchAll(/^(weft_transport_\w+(?:\{[^}]*\})?) ([\d.e+]+)$/gm)) if (Number(m[2]) > 0) parts.push(`${node} ${m[1]} ${m[2]}`);
  }
  return parts.length ? parts.join(", ") : "no packet steered or dropped for the transport on any node";
}

export interface TransportDocument {
  remotes: { address: string; spiffeId: string; node: string }[];
  allow: { source: string; destination: string; ports?: number[] }[];
}

/**
 * Why the transports cannot carry `from` -> `to` on this cluster now, or
 * null once both transports run and the client's node knows where the
 * server is (its transport document names the server's address). Call after
 * the mtls policy was written and the nodes converged.
 */
export async function transportUnavailable(c: Cluster, from: string, to: string): Promise<string | null> {
  const src = c.workloads[from]!;
  const dst = c.workloads[to]!;
  for (const node of [src.node, dst.node]) {
    if (transportPid(c, node) === null) return `the agent of ${node} runs no transport process (nodeagent/src/transport/main.ts)`;
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await http(`${c.api.base}/v1/nodes/${src.node}/transport`, "GET", c.api.operator);
    if (res.status !== 200) return `GET /v1/nodes/${src.node}/transport answers ${res.status}`;
    const doc = JSON.parse(res.body) as TransportDocument;
    if (doc.remotes.some((r) => r.address === dst.address)) return null;
    if (Date.now() > deadline) return `${src.node}'s transport document names no remote ${dst.address} after 30 s: ${res.body.slice(0, 300)}`;
    await new Promise((r) => setTimeout(r, 250));
  }
}

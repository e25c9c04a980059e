/**
 * Mode "weft" of bench:l7 against issue 21's interfaces: PUT
 * /v1/tenants/{t}/httpRoutes/{name} makes a service L7, the agent runs the
 * node's HAProxy and reports `l7.state` in GET /v1/nodes/{node}, and the
 * datapath counts the connections it hands to that proxy (reason
 * `l7-steered`). Each check answers why the mode cannot run when it cannot,
 * so the benches say so and measure the rest; nothing is ever measured as
 * "weft" that the kernel did not steer through the node's proxy.
 */
import { datapathPackets, type Cluster, type ClusterTenant } from "../support/cluster.ts";
import { commandOf } from "../support/netns.ts";
import { http } from "../support/weft.ts";
import { descendants, problemText } from "../transport/weft-transport.ts";

/** The HAProxy processes (master and workers) the node's agent runs: its descendants whose command is haproxy. */
export function proxyPids(c: Cluster, node: string): number[] {
  const agent = c.nodes[node]?.agent;
  if (!agent) return [];
  return descendants(agent.pid).filter((p) => /^(\S*\/)?haproxy(\s|$)/.test(commandOf(p)));
}

/** Packets the node's datapath counted as handed to its L7 proxy, all hooks. */
export async function steeredToProxy(c: Cluster, node: string): Promise<number> {
  const counts = datapathPackets(await c.agentMetrics(node));
  return Object.entries(counts).reduce((sum, [key, n]) => (key.endsWith("/l7-steered") ? sum + n : sum), 0);
}

/** The sum of weft_http_requests_total in an agent's /metrics text: the request records the agent read from its proxy. */
export function httpRequests(metrics: string): number {
  let sum = 0;
  for (const m of metrics.matchAll(/^weft_http_requests_total(?:\{[^}]*\})? ([\d.e+]+)$/gm)) sum += Number(m[1]);
  return sum;
}

/** The L7 counts on every node ("node-a egress/l7-steered 12, node-a egress/proxy-down 3, ..."): what a failed weft run says. */
export async function l7Counts(c: Cluster): Promise<string> {
  const parts: string[] = [];
  for (const node of Object.keys(c.nodes)) {
    const metrics = await c.agentMetrics(node);
    for (const [key, n] of Object.entries(datapathPackets(metrics))) if (n > 0 && /\/(l7-steered|proxy-down|http-forwarded|http-refused)$/.test(key)) parts.push(`${node} ${key} ${n}`);
    for (const m of metrics.matchAll(/^(weft_http_requests_total\{[^}]*\}) ([\d.e+]+)$/gm)) if (Number(m[2]) > 0) parts.push(`${node} ${m[1]} ${m[2]}`);
  }
  return parts.length ? parts.join(", ") : "no packet steered to or dropped for the L7 proxy on any node";
}

/** Makes `service` L7 with a route sending every request to all its backends; null, or why the API refused. */
export async function routeAll(c: Cluster, t: ClusterTenant, route: string, service: string): Promise<string | null> {
  // Not t.put: a refusal is an answer here (the API before issue 21's routes), not a failure of the bench.
  const res = await http(`${c.api.base}/v1/tenants/${t.tenant}/httpRoutes/${route}`, "PUT", t.auth, { parentRefs: [{ name: service }], rules: [{ backendRefs: [{}] }] });
  return res.status >= 300 ? `the API refuses PUT httpRoutes/${route}: ${problemText(res.status, res.body)}` : null;
}

/** Why the nodes did not converge on what was written last (each node's errors), or null once they did (30 s bound). */
export async function convergeUnavailable(c: Cluster): Promise<string | null> {
  try {
    await c.converged({ boundMs: 30_000 });
    return null;
  } catch {
    const errors: string[] = [];
    for (const node of Object.keys(c.nodes)) {
      const res = await http(`${c.api.base}/v1/nodes/${node}`, "GET", c.api.operator);
      const shown = JSON.parse(res.body) as { converged?: boolean; errors?: string[] };
      if (!shown.converged) errors.push(`${node}: ${shown.errors?.length ? shown.errors.join("; ") : "no error reported"}`);
    }
    return `the nodes did not converge on the route in 30 s (${errors.join(", ") || "every node converged meanwhile"})`;
  }
}

interface NodeL7 {
  l7?: { state: string; converged?: boolean; appliedEtag?: string; detail?: string } | null;
}

/**
 * Why the node's L7 proxy cannot carry requests now, or null once its agent
 * reports `l7.state` running on the node's current document (`converged`,
 * where the API says) and runs haproxy processes. Waits up to 30 s
 * (the agent starts HAProxy after it applied the document).
 */
export async function proxyUnavailable(c: Cluster, node: string): Promise<string | null> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await http(`${c.api.base}/v1/nodes/${node}`, "GET", c.api.operator);
    if (res.status !== 200) return `GET /v1/nodes/${node} answers ${res.status}`;
    const l7 = (JSON.parse(res.body) as NodeL7).l7;
    const running = l7?.state === "running";
    // The API compares the document the proxy serves with the node's current one; a proxy still on an older one may lack the route's frontend.
    const current = l7?.converged !== false;
    const pids = proxyPids(c, node);
    if (running && current && pids.length > 0) return null;
    if (Date.now() > deadline) {
      if (l7 === undefined) return `GET /v1/nodes/${node} shows no l7 field (the API before issue 21's status)`;
      if (!running) return `${node}'s agent reports l7 ${l7 === null ? "never" : `state ${l7.state}${l7.detail ? ` (${l7.detail})` : ""}`} after 30 s`;
      if (!current) return `${node}'s proxy still serves an older L7 document (appliedEtag ${l7?.appliedEtag ?? "none"}) after 30 s`;
      return `${node}'s agent reports l7 running but runs no haproxy process`;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** weft_transport_bytes_total{direction, way} in an agent's /metrics text: payload its transport carried (outbound/to_peer: read from the node's side, sent to the peer). */
export function transportBytes(metrics: string, direction: "outbound" | "inbound", way: "to_peer" | "from_peer"): number {
  let sum = 0;
  for (const m of metrics.matchAll(/^weft_transport_bytes_total\{([^}]*)\} ([\d.e+]+)$/gm)) {
    if (m[1]!.includes(`direction="${direction}"`) && m[1]!.includes(`way="${way}"`)) sum += Number(m[2]);
  }
  return sum;
}

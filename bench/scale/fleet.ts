/**
 * bench/scale's setup through the API, as an operator would do it: nodes
 * registered with one-time join tokens, each given one workload of the one
 * shared tenant (so that tenant's ipcache reaches every node, and one more
 * workload of it changes every node), plus a tenant present on one node only.
 */
import { Agent, request } from "node:http";
import { pool } from "../support/pool.ts";

/** A request that has not answered in this long fails the run instead of hanging it. */
const REQUEST_TIMEOUT_MS = 120_000;
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

export interface Reply {
  status: number;
  etag: string;
  body: string;
}

export function call(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Reply> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, agent, headers: { ...headers, ...(payload ? { "content-type": "application/json" } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, etag: String(res.headers.etag ?? ""), body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path}: no answer in ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on("error", reject);
    req.end(payload);
  });
}

export async function ok(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Record<string, unknown>> {
  const res = await call(base, method, path, headers, body);
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${res.body.slice(0, 500)}`);
  return res.body ? (JSON.parse(res.body) as Record<string, unknown>) : {};
}

export interface FleetNode {
  index: number;
  name: string;
  credential: string;
  podCidr: string;
}

/**
 * Addresses are unique across the platform and lie in their node's pod CIDR
 * block: counted up from its second host address (the first is the node's L7
 * proxy address, which no workload may have).
 */
export class Addresses {
  private readonly handedOut = new Map<string, number>();
  next(node: FleetNode): string {
    const k = (this.handedOut.get(node.name) ?? 1) + 1;
    this.handedOut.set(node.name, k);
    const first = node.podCidr.split("/")[0]!.split(".").reduce((a, o) => a * 256 + Number(o), 0);
    return [24, 16, 8, 0].map((b) => Math.floor((first + k) / 2 ** b) % 256).join(".");
  }
}

export class Fleet {
  readonly nodes: FleetNode[] = [];
  readonly tenants: string[] = [];
  readonly addresses = new Addresses();

  constructor(
    /** Where each request goes: replicas in turn. */
    private readonly bases: () => string[],
    private readonly operator: Record<string, string>,
    readonly run: string,
  ) {}

  private turn = 0;
  base(): string {
    const bases = this.bases();
    return bases[this.turn++ % bases.length]!;
  }

  async tenant(name: string): Promise<void> {
    await ok(this.base(), "POST", "/v1/tenants", this.operator, { name });
    this.tenants.push(name);
    await ok(this.base(), "PUT", `/v1/tenants/${name}/identities/web`, this.operator, { path: "/web" });
  }

  async registerNode(index: number): Promise<FleetNode> {
    const base = this.base();
    const name = `scale-${this.run}-${index}`;
    const { token } = await ok(base, "POST", "/v1/join-tokens", this.operator, {});
    const { credential, node } = await ok(base, "POST", "/v1/nodes/register", {}, { joinToken: token, name, zone: "z" });
    const n = { index, name, credential: credential as string, podCidr: (node as { podCidr: string }).podCidr };
    this.nodes[index] = n;
    return n;
  }

  /** PUT a workload of `tenant` on `node`; answers the time the response arrived. */
  async placeWorkload(tenant: string, name: string, node: FleetNode, base = this.base()): Promise<number> {
    await ok(base, "PUT", `/v1/tenants/${tenant}/workloads/${name}`, this.operator, { identity: "web", node: node.name, addresses: [this.addresses.next(node)] });
    return performance.timeOrigin + performance.now();
  }

  async workloadExists(tenant: string, name: string): Promise<boolean> {
    const res = await call(this.base(), "GET", `/v1/tenants/${tenant}/workloads/${name}`, this.operator);
    return res.status === 200;
  }

  /** Removes what this run made (tenants first: their workloads go with them), for a shared DATABASE_URL; bounded by the request timeout. */
  async remove(limit: number): Promise<void> {
    const gone = (path: string) => call(this.base(), "DELETE", path, this.operator).catch(() => undefined);
    await pool(this.tenants, limit, (t) => gone(`/v1/tenants/${t}`));
    await pool(this.nodes.filter(Boolean), limit, (n) => gone(`/v1/nodes/${n.name}`));
  }

  close(): void {
    agent.destroy();
  }
}

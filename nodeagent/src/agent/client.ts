// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's view of the API: a few routes, plain fetch, every call with a
 * deadline. Failures are ApiError with the status (0 when the API could not
 * be reached), so the loop can tell "down, back off" from "refused".
 */

export class ApiError extends Error {
  constructor(
    message: string,
    /** HTTP status, or 0 when no answer came (refused, reset, timeout). */
    readonly status: number,
  ) {
    super(message);
  }
}

/** One answer of GET /v1/nodes/{node}/datapath, before validation. */
export type DatapathAnswer =
  | { kind: "unchanged" }
  | { kind: "gone" }
  | { kind: "full"; etag: string | null; body: unknown }
  | { kind: "delta"; etag: string | null; body: unknown };

export interface DatapathQuery {
  /** The ETag of the state the agent holds (If-None-Match). */
  etag?: string | null;
  /** Ask for a delta from this revision. */
  since?: number | null;
  /** Long-poll seconds (the API caps at 60); 0 answers at once. */
  waitSeconds?: number;
  signal?: AbortSignal;
}

export interface X509SvidAnswer {
  certificate: string;
  chain: string[];
  expiresAt: string;
  serial: string;
}

/** A workload the node runs, as GET /v1/nodes/{node}/workloads lists it (see the report to the API owners). */
export interface NodeWorkload {
  tenant: string;
  name: string;
  identity: string;
  addresses: string[];
  interface?: string;
  spiffeId?: string;
}

/**
 * A node's block of the pod CIDR as the API answers it: the block; null
 * while the API has none for the node (registered before blocks existed);
 * undefined when the API does not know the field (an older API).
 */
export type PodCidrAnswer = string | null | undefined;

function podCidrOf(node: { podCidr?: unknown }): PodCidrAnswer {
  if (!("podCidr" in node)) return undefined;
  return typeof node.podCidr === "string" ? node.podCidr : null;
}

/** Slack on top of a long poll before the agent gives up on an answer. */
const LONG_POLL_SLACK_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private credential: string | null = null,
  ) {}

  setCredential(credential: string): void {
    this.credential = credential;
  }

  async register(input: { joinToken: string; name: string; zone: string; labels?: Record<string, string> }): Promise<{ node: { name: string; podCidr: PodCidrAnswer }; credential: string }> {
    const body = await this.json("POST", "/v1/nodes/register", input, [201]);
    const b = body as { node?: { name?: unknown; podCidr?: unknown }; credential?: unknown };
    if (typeof b.credential !== "string" || typeof b.node?.name !== "string") {
      throw new ApiError("failed to register node: the answer has no {node.name, credential}", 201);
    }
    return { node: { name: b.node.name, podCidr: podCidrOf(b.node) }, credential: b.credential };
  }

  /** GET /v1/nodes/{node} (the node's credential may read its own node): what the agent needs of it. */
  async node(node: string): Promise<{ name: string; podCidr: PodCidrAnswer }> {
    const path = `/v1/nodes/${encodeURIComponent(node)}`;
    const b = (await this.json("GET", path, undefined, [200])) as { name?: unknown; podCidr?: unknown };
    if (typeof b?.name !== "string") throw new ApiError(`failed to GET ${path}: the answer has no name`, 200);
    return { name: b.name, podCidr: podCidrOf(b) };
  }

  async datapath(node: string, q: DatapathQuery = {}): Promise<DatapathAnswer> {
    const params = new URLSearchParams();
    if (q.since !== null && q.since !== undefined) params.set("since", String(q.since));
    if (q.waitSeconds) params.set("wait", String(q.waitSeconds));
    const path = `/v1/nodes/${encodeURIComponent(node)}/datapath${params.size ? `?${params}` : ""}`;
    const headers: Record<string, string> = {};
    if (q.etag) headers["if-none-match"] = q.etag;
    const res = await this.request("GET", path, undefined, headers, ((q.waitSeconds ?? 0) * 1000) + LONG_POLL_SLACK_MS, q.signal);
    if (res.status === 304) {
      await res.body?.cancel();
      return { kind: "unchanged" };
    }
    if (res.status === 410) {
      await res.body?.cancel();
      return { kind: "gone" };
    }
    if (res.status !== 200) throw await this.failure("GET", path, res);
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      throw new ApiError(`failed to read the datapath of ${node}: the answer is not JSON (${(err as Error).message})`, 200);
    }
    const etag = res.headers.get("etag");
    const isDelta = body !== null && typeof body === "object" && "upserts" in body;
    return { kind: isDelta ? "delta" : "full", etag, body };
  }

  async putStatus(node: string, status: { appliedRevision: number; hash: string; counters: Record<string, number>; errors: string[] }): Promise<void> {
    await this.json("PUT", `/v1/nodes/${encodeURIComponent(node)}/status`, status, [200]);
  }

  async issueX509Svid(tenant: string, identity: string, csr: string): Promise<X509SvidAnswer> {
    const body = (await this.json("POST", `/v1/tenants/${encodeURIComponent(tenant)}/identities/${encodeURIComponent(identity)}/x509-svids`, { csr }, [201])) as Partial<X509SvidAnswer>;
    if (typeof body.certificate !== "string" || !Array.isArray(body.chain) || typeof body.expiresAt !== "string") {
      throw new ApiError(`failed to issue X.509-SVID for ${tenant}/${identity}: the answer has no {certificate, chain, expiresAt}`, 201);
    }
    return body as X509SvidAnswer;
  }

  async bundlePem(tenant: string): Promise<string> {
    const path = `/v1/tenants/${encodeURIComponent(tenant)}/bundle.pem`;
    const res = await this.request("GET", path);
    if (res.status !== 200) throw await this.failure("GET", path, res);
    return res.text();
  }

  /** The workloads on this node, or null when the API does not offer the list to this node (404, 403). */
  async nodeWorkloads(node: string): Promise<NodeWorkload[] | null> {
    const path = `/v1/nodes/${encodeURIComponent(node)}/workloads`;
    const items: NodeWorkload[] = [];
    let cursor: string | undefined;
    // Bounded: a node with more than 100 pages of workloads is not a node this agent version serves.
    for (let page = 0; page < 100; page++) {
      const res = await this.request("GET", cursor ? `${path}?cursor=${encodeURIComponent(cursor)}` : path);
      // 404: no such route. 403: the API does not let node credentials list workloads. Either way: not offered.
      if ((res.status === 404 || res.status === 403) && page === 0) {
        await res.body?.cancel();
        return null;
      }
      if (res.status !== 200) throw await this.failure("GET", path, res);
      const body = (await res.json()) as { items?: unknown; nextCursor?: unknown };
      if (!Array.isArray(body.items)) throw new ApiError(`failed to list workloads of ${node}: the answer has no items[]`, 200);
      for (const w of body.items as Partial<NodeWorkload>[]) {
        if (typeof w.tenant !== "string" || typeof w.name !== "string" || typeof w.identity !== "string") {
          throw new ApiError(`failed to list workloads of ${node}: an item lacks tenant, name or identity`, 200);
        }
        items.push({ tenant: w.tenant, name: w.name, identity: w.identity, addresses: Array.isArray(w.addresses) ? w.addresses : [], ...(w.interface ? { interface: w.interface } : {}), ...(w.spiffeId ? { spiffeId: w.spiffeId } : {}) });
      }
      if (typeof body.nextCursor !== "string" || !body.nextCursor) return items;
      cursor = body.nextCursor;
    }
    throw new ApiError(`failed to list workloads of ${node}: more than 100 pages`, 200);
  }

  private async json(method: string, path: string, payload: unknown, ok: number[]): Promise<unknown> {
    const res = await this.request(method, path, payload);
    if (!ok.includes(res.status)) throw await this.failure(method, path, res);
    try {
      return await res.json();
    } catch (err) {
      throw new ApiError(`failed to ${method} ${path}: the answer is not JSON (${(err as Error).message})`, res.status);
    }
  }

  private async request(method: string, path: string, payload?: unknown, headers: Record<string, string> = {}, timeoutMs = REQUEST_TIMEOUT_MS, signal?: AbortSignal): Promise<Response> {
    const h: Record<string, string> = { accept: "application/json", ...headers };
    if (this.credential) h.authorization = `Bearer ${this.credential}`;
    if (payload !== undefined) h["content-type"] = "application/json";
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      return await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: h,
        ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = timeout.aborted ? `no answer within ${timeoutMs} ms` : (cause?.code ?? cause?.message ?? (err as Error).message);
      throw new ApiError(`failed to ${method} ${path}: ${why}`, 0);
    }
  }

  private async failure(method: string, path: string, res: Response): Promise<ApiError> {
    let detail = "";
    try {
      const text = await res.text();
      try {
        const p = JSON.parse(text) as { title?: string; detail?: string };
        detail = [p.title, p.detail].filter(Boolean).join(": ");
      } catch {
        detail = text.slice(0, 200);
      }
    } catch {
      // the body is gone; the status says enough
    }
    return new ApiError(`failed to ${method} ${path}: ${res.status}${detail ? ` ${detail}` : ""}`, res.status);
  }
}

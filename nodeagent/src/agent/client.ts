// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's view of the API: a few routes, plain fetch (node:http for the
 * large flow batches), every call with a deadline. Failures are ApiError
 * with the status (0 when the API could not be reached), so the loop can
 * tell "down, back off" from "refused".
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

import { transportFailure } from "./api-trust.ts";
import { EndpointSet, type Endpoint } from "./endpoints.ts";

export class ApiError extends Error {
  constructor(
    message: string,
    /** HTTP status, or 0 when no answer came (refused, reset, timeout). */
    readonly status: number,
    /** What a Retry-After header (in seconds) asked for, in ms; null without one. */
    readonly retryAfterMs: number | null = null,
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

/**
 * The client's contract with the API: every route it calls, with the fields
 * it sends and the fields it reads and their JSON types, in one table. The
 * client's TypeScript types below are derived from it, and
 * test/agent/client-contract.test.ts compares it with openapi/openapi.json, so
 * a change of the API's schema that the client would not survive fails that
 * test instead of an agent in the field. Nothing here is copied from the API's
 * code: the document is the contract.
 *
 * An answer's field marked optional is one the client copes without (it reads
 * it when present); nullable, one it accepts as null. A closed object is one
 * whose unknown properties the client refuses, so the API may not add any.
 * An object with values is a map; an object with neither fields nor values is
 * opaque here (the codec checks datapath entries field by field).
 */
export type JsonType = "string" | "integer" | "number" | "boolean" | "array" | "object";

export interface Shape {
  readonly type: JsonType;
  readonly optional?: boolean;
  readonly nullable?: boolean;
  /** array: its items */
  readonly items?: Shape;
  /** object: the properties the client sends or reads */
  readonly fields?: { readonly [name: string]: Shape };
  /** object used as a map: its values */
  readonly values?: Shape;
  /** object: the client refuses properties it does not list */
  readonly closed?: boolean;
}

export interface RouteContract {
  readonly method: "get" | "post" | "put";
  /** As the document spells it, parameters in braces. */
  readonly path: string;
  /** Statuses the client acts on; the first is the one whose answer it reads. */
  readonly statuses: readonly number[];
  readonly query?: readonly string[];
  readonly headers?: readonly string[];
  /** The JSON request body. */
  readonly body?: Shape;
  /** What the client reads of the first status's answer: one shape, or one per alternative the API answers. */
  readonly answer?: Shape | readonly Shape[];
  /** The answer's media type, when not application/json. */
  readonly media?: string;
}

/** The TypeScript type of a JSON value of shape S. */
export type JsonOf<S> = S extends { nullable: true } ? BaseOf<S> | null : BaseOf<S>;
type BaseOf<S> = S extends { type: "string" }
  ? string
  : S extends { type: "integer" | "number" }
    ? number
    : S extends { type: "boolean" }
      ? boolean
      : S extends { type: "array"; items: infer I }
        ? JsonOf<I>[]
        : S extends { type: "object"; fields: infer F }
          ? ObjectOf<F>
          : S extends { type: "object"; values: infer V }
            ? Record<string, JsonOf<V>>
            : S extends { type: "object" }
              ? Record<string, unknown>
              : never;
type ObjectOf<F> = Flat<
  { -readonly [K in keyof F as F[K] extends { optional: true } ? never : K]: JsonOf<F[K]> } & {
    -readonly [K in keyof F as F[K] extends { optional: true } ? K : never]?: JsonOf<F[K]>;
  }
>;
type Flat<T> = { [K in keyof T]: T[K] };

const str = { type: "string" } as const;
const int = { type: "integer" } as const;
const strings = { type: "array", items: str } as const;
/** A datapath entry; its key's and value's fields are the codec's to check. */
const entry = { type: "object", fields: { key: { type: "object" }, value: { type: "object" } } } as const;
const entries = { type: "array", items: entry } as const;
const keys = { type: "array", items: { type: "object" } } as const;
/** A delta names only the maps it changes; a map name the agent does not know is ignored. */
const deltaMaps = <S extends Shape>(each: S) => ({ type: "object", fields: { ipcache: each, endpoint: each, policy: each, svc: each, lb_slot: each, backend: each, audit: each, steer: each, l7: each } }) as const;
const optional = <S extends Shape>(shape: S) => ({ ...shape, optional: true }) as const;
/** podCidr: null while the API has no block for the node; absent from an older API. */
const podCidr = { type: "string", nullable: true, optional: true } as const;

/**
 * A workload's health check (issue #15): absent, no probing. The API sends
 * every field with its default filled, path and expectStatus for http only;
 * src/agent/health.ts checks the values before probing.
 */
const healthCheck = {
  type: "object",
  fields: {
    protocol: str,
    port: int,
    path: optional(str),
    expectStatus: optional(int),
    intervalSeconds: int,
    timeoutSeconds: int,
    healthyThreshold: int,
    unhealthyThreshold: int,
  },
} as const satisfies Shape;

const nodeWorkload = {
  type: "object",
  fields: {
    tenant: str,
    name: str,
    identity: str,
    addresses: optional(strings),
    interface: optional(str),
    spiffeId: optional(str),
    healthCheck: optional(healthCheck),
  },
} as const satisfies Shape;

/**
 * Status report additions (issue #15), each the full set at the time of the
 * report and left out when empty (absent means none): the desired local
 * workloads no tc programs guard, and the probed workloads' states.
 */
const unresolvedWorkload = { type: "object", fields: { tenant: str, workload: str, address: str, reason: str } } as const;
const workloadHealth = { type: "object", fields: { tenant: str, workload: str, state: str, since: str } } as const;

/** The node's transport (issue #18): the document its transport is configured from, and what the status report says of it. */
export const TRANSPORT_CONTRACT = {
  method: "get",
  path: "/v1/nodes/{node}/transport",
  statuses: [200, 304],
  headers: ["if-none-match"],
  answer: { type: "object", fields: { bundles: { type: "array", items: { type: "object" } }, remotes: { type: "array", items: { type: "object" } }, allow: { type: "array", items: { type: "object" } } } },
} as const satisfies RouteContract;
/** `transport` of the status report: the endpoint peers reach this node's transport at, and whether it runs. */
export const TRANSPORT_STATUS = { type: "object", optional: true, fields: { endpoint: { type: "string", nullable: true }, state: str } } as const satisfies Shape;
export type TransportStatus = JsonOf<typeof TRANSPORT_STATUS>;

/**
 * The node's L7 proxy (issue 21): the document it is rendered from (its
 * fields are src/l7/document.ts's to check), and what the status report
 * says of it. The route comes from another branch: L7_CONTRACT stays out
 * of CLIENT_CONTRACT until openapi.json has it (client-contract.test.ts
 * checks it as soon as it does), and a 404 meanwhile reads as "missing".
 */
export const L7_CONTRACT = {
  method: "get",
  path: "/v1/nodes/{node}/l7",
  statuses: [200, 304],
  headers: ["if-none-match"],
  answer: { type: "object", fields: { proxyAddress: str, frontends: { type: "array", items: { type: "object" } }, backends: { type: "array", items: { type: "object" } }, callers: { type: "array", items: { type: "object" } } } },
} as const satisfies RouteContract;
/** `l7` of the status report (the API's ReportedL7). */
export const L7_STATUS = { type: "object", optional: true, fields: { state: str, appliedEtag: { ...str, optional: true }, detail: { ...str, optional: true } } } as const satisfies Shape;
export type L7Status = JsonOf<typeof L7_STATUS>;

export const CLIENT_CONTRACT = {
  register: {
    method: "post",
    path: "/v1/nodes/register",
    statuses: [201],
    body: {
      type: "object",
      fields: { joinToken: str, name: str, zone: str, labels: { type: "object", values: str, optional: true } },
    },
    answer: { type: "object", fields: { node: { type: "object", fields: { name: str, podCidr } }, credential: str } },
  },
  node: {
    method: "get",
    path: "/v1/nodes/{node}",
    statuses: [200],
    answer: { type: "object", fields: { name: str, podCidr } },
  },
  datapath: {
    method: "get",
    path: "/v1/nodes/{node}/datapath",
    statuses: [200, 304, 410],
    query: ["since", "wait"],
    headers: ["if-none-match"],
    answer: [
      {
        type: "object",
        fields: {
          revision: int,
          hash: str,
          maps: { type: "object", closed: true, fields: { ipcache: entries, endpoint: entries, policy: entries, svc: entries, lb_slot: entries, backend: entries, audit: entries, steer: entries, l7: entries } },
        },
      },
      { type: "object", fields: { revision: int, hash: str, upserts: deltaMaps(optional(entries)), deletes: deltaMaps(optional(keys)) } },
    ],
  },
  status: {
    method: "put",
    path: "/v1/nodes/{node}/status",
    statuses: [200],
    body: {
      type: "object",
      fields: {
        appliedRevision: int,
        hash: str,
        counters: { type: "object", values: int },
        errors: strings,
        unresolved: optional({ type: "array", items: unresolvedWorkload }),
        health: optional({ type: "array", items: workloadHealth }),
        transport: TRANSPORT_STATUS,
        l7: L7_STATUS,
      },
    },
  },
  x509Svid: {
    method: "post",
    path: "/v1/tenants/{tenant}/identities/{name}/x509-svids",
    statuses: [201],
    body: { type: "object", fields: { csr: str } },
    answer: { type: "object", fields: { certificate: str, chain: strings, expiresAt: str, serial: str } },
  },
  /** The node's L7 proxy's X.509-SVID in a tenant (its transport presents it to other nodes' transports). */
  nodeProxySvid: {
    method: "post",
    path: "/v1/tenants/{tenant}/node-proxy-svids",
    statuses: [201],
    body: { type: "object", fields: { csr: str } },
    answer: { type: "object", fields: { certificate: str, chain: strings, expiresAt: str, serial: str, spiffeId: str } },
  },
  bundlePem: {
    method: "get",
    path: "/v1/tenants/{tenant}/bundle.pem",
    statuses: [200],
    media: "application/x-pem-file",
    answer: str,
  },
  /** The SPIFFE bundle (JWK set): the Workload API's X.509 and JWT bundles. */
  bundle: {
    method: "get",
    path: "/v1/tenants/{tenant}/bundle",
    statuses: [200],
    answer: { type: "object", fields: { keys: { type: "array", items: { type: "object" } }, spiffe_sequence: int, spiffe_refresh_hint: int } },
  },
  /** The bundles of the trust domains a tenant federates with (issue #16); 404/403: none offered to this node. */
  federatedBundles: {
    method: "get",
    path: "/v1/tenants/{tenant}/federated-bundles",
    statuses: [200, 403, 404],
    answer: {
      type: "object",
      fields: {
        bundles: {
          type: "array",
          items: {
            type: "object",
            fields: { trustDomain: str, x509Authorities: strings, jwtAuthorities: { type: "array", items: { type: "object", fields: { keyId: str, publicKey: str } } } },
          },
        },
      },
    },
  },
  /** A JWT-SVID for the Workload API's FetchJWTSVID, under the node credential. */
  jwtSvid: {
    method: "post",
    path: "/v1/tenants/{tenant}/identities/{name}/jwt-svids",
    statuses: [201],
    body: { type: "object", fields: { audience: strings } },
    answer: { type: "object", fields: { token: str, expiresAt: str } },
  },
  transport: TRANSPORT_CONTRACT,
  /** 404 or 403: the API does not offer the list to this node. */
  nodeWorkloads: {
    method: "get",
    path: "/v1/nodes/{node}/workloads",
    statuses: [200, 403, 404],
    query: ["cursor"],
    answer: { type: "object", fields: { items: { type: "array", items: nodeWorkload }, nextCursor: { type: "string", nullable: true, optional: true } } },
  },
} as const satisfies Record<string, RouteContract>;

/**
 * Flow upload (issue #17): the body the API's flows route is built against
 * on another branch. Kept out of CLIENT_CONTRACT until openapi.json has the
 * route; test/agent/client-contract.test.ts checks it against the document
 * as soon as it does. 202: stored; 200: a batchId already stored (a retry).
 */
const flowEndpoint = { type: "object", fields: { address: str, port: int, identity: int, tenant: int } } as const;
const flowAggregate = {
  type: "object",
  fields: {
    start: str,
    end: str,
    srcIdentity: int,
    srcTenant: int,
    dstIdentity: int,
    dstTenant: int,
    dstPort: int,
    protocol: int,
    verdict: str,
    reason: str,
    ruleId: int,
    count: int,
    bytes: int,
  },
} as const;
const flowSample = {
  type: "object",
  fields: {
    time: str,
    hook: str,
    verdict: str,
    reason: str,
    ruleId: int,
    protocol: int,
    src: flowEndpoint,
    dst: flowEndpoint,
    originalDst: optional({ type: "object", fields: { address: str, port: int } }),
  },
} as const;
export const FLOWS_CONTRACT = {
  method: "post",
  path: "/v1/nodes/{node}/flows",
  statuses: [202, 200],
  body: {
    type: "object",
    fields: {
      batchId: str,
      lost: { type: "object", fields: { kernel: int, agent: int } },
      aggregates: { type: "array", items: flowAggregate },
      flows: { type: "array", items: flowSample },
    },
  },
} as const satisfies RouteContract;

export type FlowBatch = JsonOf<typeof FLOWS_CONTRACT.body>;
export type FlowAggregate = JsonOf<typeof flowAggregate>;
export type FlowSample = JsonOf<typeof flowSample>;


/** One answer of GET /v1/nodes/{node}/l7, before validation; "missing": the API has no such route (404). */
export type L7DocumentAnswer = { kind: "unchanged" } | { kind: "missing" } | { kind: "document"; etag: string | null; body: unknown };

/** One answer of GET /v1/nodes/{node}/transport, before validation. */
export type TransportDocumentAnswer = { kind: "unchanged" } | { kind: "document"; etag: string | null; body: unknown };

type Contract = typeof CLIENT_CONTRACT;

/** A workload the node runs, as GET /v1/nodes/{node}/workloads lists it; addresses [] when the answer has none. */
export type NodeWorkload = Flat<Omit<JsonOf<typeof nodeWorkload>, "addresses"> & Required<Pick<JsonOf<typeof nodeWorkload>, "addresses">>>;
export type RegisterBody = JsonOf<Contract["register"]["body"]>;
export type RegisteredNode = JsonOf<Contract["register"]["answer"]>;
export type NodeAnswer = JsonOf<Contract["node"]["answer"]>;
/** The full state GET /v1/nodes/{node}/datapath answers, as far as the client's table describes it. */
export type DatapathStateBody = JsonOf<Contract["datapath"]["answer"][0]>;
export type DatapathDeltaBody = JsonOf<Contract["datapath"]["answer"][1]>;
export type StatusReport = JsonOf<Contract["status"]["body"]>;
/** The status report; its transport part (TRANSPORT_STATUS) is left out when the agent runs no transport. */
export type StatusReportWithTransport = StatusReport;
export type X509SvidAnswer = JsonOf<Contract["x509Svid"]["answer"]>;
export type NodeProxySvidAnswer = JsonOf<Contract["nodeProxySvid"]["answer"]>;
export type BundleAnswer = JsonOf<Contract["bundle"]["answer"]>;
export type JwtSvidAnswer = JsonOf<Contract["jwtSvid"]["answer"]>;
export type FederatedBundlesAnswer = JsonOf<Contract["federatedBundles"]["answer"]>;

/** A route's path with its parameters filled in (each encoded). */
function pathOf(route: keyof Contract | "flows", params: Record<string, string> = {}): string {
  return (route === "flows" ? FLOWS_CONTRACT : CLIENT_CONTRACT[route]).path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const v = params[name];
    if (v === undefined) throw new Error(`failed to build the path of ${route}: no ${name}`);
    return encodeURIComponent(v);
  });
}

/**
 * A node's block of the pod CIDR as the API answers it: the block; null
 * while the API has none for the node (registered before blocks existed);
 * undefined when the API does not know the field (an older API).
 */
export type PodCidrAnswer = JsonOf<typeof podCidr> | undefined;

function podCidrOf(node: { podCidr?: unknown }): PodCidrAnswer {
  if (!("podCidr" in node)) return undefined;
  return typeof node.podCidr === "string" ? node.podCidr : null;
}

/** Slack on top of a long poll before the agent gives up on an answer. */
const LONG_POLL_SLACK_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;

/** How long datapath() waits at most for a long poll of `waitSeconds` before it fails. */
export function datapathTimeoutMs(waitSeconds: number): number {
  return waitSeconds * 1000 + LONG_POLL_SLACK_MS;
}

export class ApiClient {
  /** Where every call goes: one round over the set per call, from its current endpoint (endpoints.ts). */
  readonly endpoints: EndpointSet;

  constructor(
    /** One base URL, or the agent's endpoint set. */
    api: string | EndpointSet,
    private credential: string | null = null,
    /** For a single base URL: how the API's certificate is checked over https (api-trust.ts apiFetch); Node's fetch by default. */
    fetchApi: typeof fetch = fetch,
    /** Bound on each attempt of a call other than a long poll (tests shorten it). */
    private readonly requestTimeoutMs = REQUEST_TIMEOUT_MS,
  ) {
    this.endpoints = typeof api === "string" ? new EndpointSet([api], { fetch: fetchApi }) : api;
  }

  setCredential(credential: string): void {
    this.credential = credential;
  }

  async register(input: RegisterBody): Promise<RegisteredNode> {
    const body = await this.json("POST", pathOf("register"), input, [201]);
    const b = body as { node?: { name?: unknown; podCidr?: unknown }; credential?: unknown };
    if (typeof b.credential !== "string" || typeof b.node?.name !== "string") {
      throw new ApiError("failed to register node: the answer has no {node.name, credential}", 201);
    }
    return { node: { name: b.node.name, podCidr: podCidrOf(b.node) }, credential: b.credential };
  }

  /** GET /v1/nodes/{node} (the node's credential may read its own node): what the agent needs of it. */
  async node(node: string): Promise<NodeAnswer> {
    const path = pathOf("node", { node });
    const b = (await this.json("GET", path, undefined, [200])) as { name?: unknown; podCidr?: unknown };
    if (typeof b?.name !== "string") throw new ApiError(`failed to GET ${path}: the answer has no name`, 200);
    return { name: b.name, podCidr: podCidrOf(b) };
  }

  async datapath(node: string, q: DatapathQuery = {}): Promise<DatapathAnswer> {
    const params = new URLSearchParams();
    if (q.since !== null && q.since !== undefined) params.set("since", String(q.since));
    if (q.waitSeconds) params.set("wait", String(q.waitSeconds));
    const path = `${pathOf("datapath", { node })}${params.size ? `?${params}` : ""}`;
    const headers: Record<string, string> = {};
    if (q.etag) headers["if-none-match"] = q.etag;
    const res = await this.request("GET", path, undefined, headers, datapathTimeoutMs(q.waitSeconds ?? 0), q.signal);
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

  async putStatus(node: string, status: StatusReportWithTransport): Promise<void> {
    await this.json("PUT", pathOf("status", { node }), status, [200]);
  }

  /** GET /v1/nodes/{node}/transport (TRANSPORT_CONTRACT); with the ETag held, 304 answers "unchanged". */
  async nodeTransport(node: string, etag: string | null): Promise<TransportDocumentAnswer> {
    const path = pathOf("transport", { node });
    const res = await this.request("GET", path, undefined, etag ? { "if-none-match": etag } : {});
    if (res.status === 304) {
      await res.body?.cancel();
      return { kind: "unchanged" };
    }
    if (res.status !== 200) throw await this.failure("GET", path, res);
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      throw new ApiError(`failed to read the transport document of ${node}: the answer is not JSON (${(err as Error).message})`, 200);
    }
    return { kind: "document", etag: res.headers.get("etag"), body };
  }

  /** GET /v1/nodes/{node}/l7 (L7_CONTRACT); with the ETag held, 304 answers "unchanged"; 404 (an API without the route) "missing". */
  async nodeL7(node: string, etag: string | null): Promise<L7DocumentAnswer> {
    const path = L7_CONTRACT.path.replace("{node}", encodeURIComponent(node));
    const res = await this.request("GET", path, undefined, etag ? { "if-none-match": etag } : {});
    if (res.status === 304 || res.status === 404) {
      await res.body?.cancel();
      return { kind: res.status === 304 ? "unchanged" : "missing" };
    }
    if (res.status !== 200) throw await this.failure("GET", path, res);
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      throw new ApiError(`failed to read the L7 document of ${node}: the answer is not JSON (${(err as Error).message})`, 200);
    }
    return { kind: "document", etag: res.headers.get("etag"), body };
  }

  /** POST a flow batch: "accepted" (202), "duplicate" (200: a batchId the API already stored); ApiError otherwise. */
  async postFlows(node: string, batch: FlowBatch, signal?: AbortSignal): Promise<"accepted" | "duplicate"> {
    const path = pathOf("flows", { node });
    const res = await this.postLarge(path, batch, signal);
    if (!(FLOWS_CONTRACT.statuses as readonly number[]).includes(res.status)) throw answerError("POST", path, res.status, res.text, res.retryAfter);
    return res.status === 200 ? "duplicate" : "accepted";
  }

  async issueX509Svid(tenant: string, identity: string, csr: string): Promise<X509SvidAnswer> {
    const body = (await this.json("POST", pathOf("x509Svid", { tenant, name: identity }), { csr }, [201])) as Partial<X509SvidAnswer>;
    if (typeof body.certificate !== "string" || !Array.isArray(body.chain) || typeof body.expiresAt !== "string") {
      throw new ApiError(`failed to issue X.509-SVID for ${tenant}/${identity}: the answer has no {certificate, chain, expiresAt}`, 201);
    }
    return body as X509SvidAnswer;
  }

  async issueNodeProxySvid(tenant: string, csr: string): Promise<NodeProxySvidAnswer> {
    const body = (await this.json("POST", pathOf("nodeProxySvid", { tenant }), { csr }, [201])) as Partial<NodeProxySvidAnswer>;
    if (typeof body.certificate !== "string" || !Array.isArray(body.chain) || typeof body.expiresAt !== "string" || typeof body.spiffeId !== "string") {
      throw new ApiError(`failed to issue the node proxy's SVID in ${tenant}: the answer has no {certificate, chain, expiresAt, spiffeId}`, 201);
    }
    return body as NodeProxySvidAnswer;
  }

  async bundlePem(tenant: string): Promise<string> {
    const path = pathOf("bundlePem", { tenant });
    const res = await this.request("GET", path);
    if (res.status !== 200) throw await this.failure("GET", path, res);
    return res.text();
  }

  async bundle(tenant: string): Promise<BundleAnswer> {
    const path = pathOf("bundle", { tenant });
    const body = (await this.json("GET", path, undefined, [200])) as Partial<BundleAnswer>;
    if (!Array.isArray(body.keys) || typeof body.spiffe_sequence !== "number") throw new ApiError(`failed to GET ${path}: the answer has no {keys, spiffe_sequence}`, 200);
    return body as BundleAnswer;
  }

  /** A tenant's federated bundles; empty when the API does not offer them to this node (404, 403: an older API, or no workload of the tenant here). */
  async federatedBundles(tenant: string): Promise<FederatedBundlesAnswer> {
    const path = pathOf("federatedBundles", { tenant });
    const res = await this.request("GET", path);
    if (res.status === 404 || res.status === 403) {
      await res.body?.cancel();
      return { bundles: [] };
    }
    if (res.status !== 200) throw await this.failure("GET", path, res);
    const body = (await res.json()) as Partial<FederatedBundlesAnswer>;
    if (!Array.isArray(body.bundles)) throw new ApiError(`failed to GET ${path}: the answer has no bundles`, 200);
    return body as FederatedBundlesAnswer;
  }

  async issueJwtSvid(tenant: string, identity: string, audience: readonly string[]): Promise<JwtSvidAnswer> {
    const body = (await this.json("POST", pathOf("jwtSvid", { tenant, name: identity }), { audience }, [201])) as Partial<JwtSvidAnswer>;
    if (typeof body.token !== "string" || typeof body.expiresAt !== "string") {
      throw new ApiError(`failed to issue JWT-SVID for ${tenant}/${identity}: the answer has no {token, expiresAt}`, 201);
    }
    return body as JwtSvidAnswer;
  }

  /** The workloads on this node, or null when the API does not offer the list to this node (404, 403). */
  async nodeWorkloads(node: string): Promise<NodeWorkload[] | null> {
    const path = pathOf("nodeWorkloads", { node });
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
        items.push({
          tenant: w.tenant,
          name: w.name,
          identity: w.identity,
          addresses: Array.isArray(w.addresses) ? w.addresses : [],
          ...(w.interface ? { interface: w.interface } : {}),
          ...(w.spiffeId ? { spiffeId: w.spiffeId } : {}),
          // Checked field by field before any probe (health.ts healthCheckProblem); a wrong one is reported, not probed.
          ...(w.healthCheck !== undefined && w.healthCheck !== null ? { healthCheck: w.healthCheck } : {}),
        });
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

  /**
   * One call, failing over: from the current endpoint, each endpoint once
   * until one answers below 500. A refused connection, a reset, a timeout
   * or a 5xx moves the set to the next endpoint at once; only when the
   * whole round failed does the caller see the failure (and back off).
   * The caller's own abort (the agent stopping) ends the call where it is.
   */
  private async request(method: string, path: string, payload?: unknown, headers: Record<string, string> = {}, timeoutMs = this.requestTimeoutMs, signal?: AbortSignal): Promise<Response> {
    const h: Record<string, string> = { accept: "application/json", ...headers };
    if (this.credential) h.authorization = `Bearer ${this.credential}`;
    if (payload !== undefined) h["content-type"] = "application/json";
    const body = payload !== undefined ? JSON.stringify(payload) : undefined;
    return this.failingOver(method, path, timeoutMs, signal, async (ep, deadline) => {
      const res = await ep.fetch(`${ep.base}${path}`, { method, headers: h, ...(body !== undefined ? { body } : {}), signal: deadline });
      return { status: res.status, answer: res, discard: () => res.body?.cancel() };
    });
  }

  /**
   * The round behind request() and postLarge(): `send` once per endpoint,
   * from the current one, until an answer below 500; the last endpoint's
   * 5xx is answered as it is, its transport failure thrown as ApiError 0.
   */
  private async failingOver<T>(
    method: string,
    path: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    send: (ep: Endpoint, deadline: AbortSignal) => Promise<{ status: number; answer: T; discard: () => unknown }>,
  ): Promise<T> {
    const round = await this.endpoints.round();
    const several = round.length > 1;
    for (const [i, ep] of round.entries()) {
      const last = i === round.length - 1;
      const timeout = AbortSignal.timeout(timeoutMs);
      try {
        const r = await send(ep, signal ? AbortSignal.any([signal, timeout]) : timeout);
        if (r.status < 500) return r.answer;
        this.endpoints.failed(ep, `answered ${r.status}`);
        if (last) {
          this.endpoints.roundFailed();
          return r.answer;
        }
        await r.discard();
      } catch (err) {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause ?? (err as { code?: string; message?: string });
        const why = timeout.aborted ? `no answer within ${timeoutMs} ms` : transportFailure(cause, (err as Error).message);
        const where = several ? ` on ${ep.label}` : "";
        if (signal?.aborted) throw new ApiError(`failed to ${method} ${path}${where}: ${why}`, 0);
        this.endpoints.failed(ep, why);
        if (last) {
          this.endpoints.roundFailed();
          throw new ApiError(`failed to ${method} ${path}${where}${several ? `, the last of ${round.length} API endpoints` : ""}: ${why}`, 0);
        }
      }
    }
    throw new Error("failed to call the API: the endpoint set is empty");
  }

  private async failure(method: string, path: string, res: Response): Promise<ApiError> {
    let text = "";
    try {
      text = await res.text();
    } catch {
      // the body is gone; the status says enough
    }
    return answerError(method, path, res.status, text, res.headers.get("retry-after"));
  }

  /**
   * POST through node:http(s) rather than fetch: a flow batch is up to a few
   * MiB of JSON every interval, and the flow pipeline alone, fed 2,000
   * events a second for 8 s, grew 43 MiB resident with fetch (undici's
   * buffers) against 14 MiB with node:http. Same deadline, credential and
   * errors as request().
   */
  private postLarge(path: string, payload: unknown, signal?: AbortSignal): Promise<{ status: number; text: string; retryAfter: string | null }> {
    const body = Buffer.from(JSON.stringify(payload));
    const headers: Record<string, string | number> = { accept: "application/json", "content-type": "application/json", "content-length": body.length };
    if (this.credential) headers.authorization = `Bearer ${this.credential}`;
    return this.failingOver("POST", path, this.requestTimeoutMs, signal, (ep, deadline) => {
      const url = new URL(`${ep.base}${path}`);
      const send = url.protocol === "https:" ? httpsRequest : httpRequest;
      return new Promise((resolve, reject) => {
        const req = send(url, { method: "POST", headers, signal: deadline, ...ep.requestOptions }, (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            // Only a problem's title and detail are read: the rest of a long answer is not kept.
            if (size < MAX_ANSWER_KEPT) chunks.push(c);
            size += c.length;
          });
          res.on("end", () => {
            const answer = { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8", 0, MAX_ANSWER_KEPT), retryAfter: (res.headers["retry-after"] as string | undefined) ?? null };
            resolve({ status: answer.status, answer, discard: () => undefined });
          });
          res.on("error", reject);
        });
        req.on("error", reject);
        req.end(body);
      });
    });
  }
}

/** Bytes of an error answer kept for its message. */
const MAX_ANSWER_KEPT = 16 * 1024;

/** An answer the client does not act on, as an ApiError naming the problem's title and detail, and its Retry-After. */
function answerError(method: string, path: string, status: number, text: string, retryAfterHeader: string | null): ApiError {
  let detail: string;
  try {
    const p = JSON.parse(text) as { title?: string; detail?: string };
    detail = [p.title, p.detail].filter(Boolean).join(": ");
  } catch {
    detail = text.slice(0, 200);
  }
  const retryAfter = retryAfterHeader === null || retryAfterHeader.trim() === "" ? Number.NaN : Number(retryAfterHeader);
  return new ApiError(`failed to ${method} ${path}: ${status}${detail ? ` ${detail}` : ""}`, status, Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter * 1000 : null);
}

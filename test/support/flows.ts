import { randomUUID } from "node:crypto";
import { eq, inArray } from "drizzle-orm";
import type { WeftApp } from "../../api/src/app.ts";
import { cidrIdentities, identities, policies } from "../../api/src/db/schema.ts";
import { ruleIdOf } from "../../api/src/compiler/ids.ts";
import type { FlowBatch, UploadedAggregate, UploadedFlow } from "../../api/src/mesh/flows/specs.ts";
import { bearer, tenantWithToken } from "./api.ts";
import { freshVip, identity, mustPut } from "./mesh.ts";
import { addressIn, registeredNode } from "./nodes.ts";

export const CIDR = "203.0.113.0/24";

/**
 * Two tenants on one node: acme's web and db (db behind service "db" and
 * policy "db-ingress": rule 0 allows web on 5432, rule 1 denies a CIDR),
 * and other's intruder; with the numbers the datapath would report.
 */
export async function flowStage(app: WeftApp) {
  const a = await tenantWithToken(app);
  const b = await tenantWithToken(app);
  const node = await registeredNode(app);
  const spare = await registeredNode(app);
  const addr = { web: addressIn(node.name), db: addressIn(node.name), intruder: addressIn(node.name) };
  await identity(app, a.token, a.tenant, "web");
  await identity(app, a.token, a.tenant, "db");
  await identity(app, b.token, b.tenant, "intruder");
  await mustPut(app, a.token, a.tenant, "workloads/web", { identity: "web", node: node.name, addresses: [addr.web] });
  await mustPut(app, a.token, a.tenant, "workloads/db", { identity: "db", node: node.name, addresses: [addr.db] });
  await mustPut(app, b.token, b.tenant, "workloads/intruder", { identity: "intruder", node: node.name, addresses: [addr.intruder] });
  const vip = freshVip();
  await mustPut(app, a.token, a.tenant, "services/db", {
    vip,
    ports: [{ port: 80, protocol: "tcp", targetPort: 5432 }],
    backends: { explicit: [{ workload: "db", weight: 1 }] },
  });
  await mustPut(app, a.token, a.tenant, "policies/db-ingress", {
    subject: { identity: "db" },
    ingress: [
      { peers: [{ identity: "web" }], ports: [{ port: 5432, protocol: "tcp" }], action: "allow" },
      { peers: [{ cidr: CIDR }], action: "deny" },
    ],
  });
  const tenantIds = [(await app.weft.directory.byName(a.tenant))!.id, (await app.weft.directory.byName(b.tenant))!.id];
  const ids = await app.weft.db
    .select({ name: identities.name, n: identities.securityIdentity })
    .from(identities)
    .where(inArray(identities.tenantId, tenantIds));
  const num = Object.fromEntries(ids.map((r) => [r.name, r.n])) as Record<"web" | "db" | "intruder", number>;
  const [policy] = await app.weft.db.select({ id: policies.id }).from(policies).where(eq(policies.tenantId, tenantIds[0]!));
  const [cidr] = await app.weft.db.select({ n: cidrIdentities.numericId }).from(cidrIdentities).where(eq(cidrIdentities.cidr, CIDR));
  return {
    a: { ...a, id: tenantIds[0]! },
    b: { ...b, id: tenantIds[1]! },
    node,
    spare,
    addr,
    vip,
    num: { ...num, cidr: cidr!.n },
    rule: (index: number) => ruleIdOf(policy!.id, index),
  };
}
export type FlowStage = Awaited<ReturnType<typeof flowStage>>;

export const batchOf = (parts: { flows?: UploadedFlow[]; aggregates?: UploadedAggregate[]; lost?: FlowBatch["lost"] }): FlowBatch => ({
  batchId: randomUUID(),
  lost: parts.lost ?? { kernel: 0, agent: 0 },
  aggregates: parts.aggregates ?? [],
  flows: parts.flows ?? [],
});

export const upload = (app: WeftApp, node: string, credential: string, batch: unknown) =>
  app.inject({ method: "POST", url: `/v1/nodes/${node}/flows`, headers: bearer(credential), payload: batch as object });

/** Reads a Server-Sent Events response into events until aborted. */
export function sseClient(url: string, headers: Record<string, string>) {
  const controller = new AbortController();
  const events: Array<{ event: string; data: unknown }> = [];
  const comments: string[] = [];
  let status = 0;
  let contentType = "";
  const done = fetch(url, { headers, signal: controller.signal }).then(async (res) => {
    status = res.status;
    contentType = res.headers.get("content-type") ?? "";
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.startsWith(":")) comments.push(block.slice(1).trim());
          else {
            const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
            const data = /^data: (.*)$/m.exec(block)?.[1];
            events.push({ event, data: data === undefined ? undefined : JSON.parse(data) });
          }
        }
      }
    } catch (err) {
      if ((err as Error).name !== "AbortError") throw err;
    }
  }, (err: Error) => {
    if (err.name !== "AbortError") throw err;
  });
  return {
    events,
    comments,
    get status() {
      return status;
    },
    get contentType() {
      return contentType;
    },
    close: async () => {
      controller.abort();
      await done.catch(() => undefined);
    },
    done,
  };
}

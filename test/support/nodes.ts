import { randomInt } from "node:crypto";
import type { WeftApp } from "../../api/src/app.ts";
import { operator, uniqueName } from "./api.ts";

/** What a join token may fix for the node it registers, and its TTL. */
export interface JoinTokenOptions {
  ttlSeconds?: number;
  labels?: Record<string, string>;
  name?: string;
  zone?: string;
}

/** A fresh one-time join token from the operator: a TTL in seconds, or what the token fixes. */
export async function joinToken(
  app: WeftApp,
  opts?: number | JoinTokenOptions,
): Promise<{ id: string; token: string; expiresAt: string; labels: Record<string, string>; name: string | null; zone: string | null }> {
  const payload = typeof opts === "number" ? { ttlSeconds: opts } : { ...opts };
  const res = await app.inject({ method: "POST", url: "/v1/join-tokens", headers: operator, payload });
  if (res.statusCode !== 201) throw new Error(`join token failed: ${res.statusCode} ${res.body}`);
  return res.json();
}

/**
 * Registers a node through the public route; answers its name and credential.
 * The labels go on the join token (the operator fixes a node's labels, the
 * registration request does not choose them).
 */
export async function registeredNode(
  app: WeftApp,
  opts: { name?: string; zone?: string; labels?: Record<string, string> } = {},
): Promise<{ name: string; credential: string; podCidr: string }> {
  const name = opts.name ?? uniqueName("node");
  const { token } = await joinToken(app, opts.labels ? { labels: opts.labels } : {});
  const res = await app.inject({
    method: "POST",
    url: "/v1/nodes/register",
    payload: { joinToken: token, name, zone: opts.zone ?? "zone-a" },
  });
  if (res.statusCode !== 201) throw new Error(`register failed: ${res.statusCode} ${res.body}`);
  const podCidr = res.json().node.podCidr as string;
  blockOf.set(name, podCidr);
  return { name, credential: res.json().credential as string, podCidr };
}

const handedOut = new Map<string, number>();
/** The pod CIDR block of every node registeredNode registered in this file's run, by name. */
const blockOf = new Map<string, string>();

/**
 * Starts the count of handed-out addresses again, as a new test file does.
 * The unit project's files share one module graph (vitest.config.ts), and
 * each starts a fresh database whose first node gets the same first block
 * again: counting on across files would run a block out of addresses.
 */
export function forgetHandedOutAddresses(): void {
  handedOut.clear();
  blockOf.clear();
}

/**
 * The next host address of a node's pod CIDR block (its registration answer's
 * podCidr): workload addresses must lie in their node's block. A block belongs
 * to one node at a time and is handed out only while no workload holds an
 * address in it, so counting up from its host addresses is unique even
 * across suites sharing one Postgres; it starts at the second (the first is
 * the node's L7 proxy address). Takes the block, or the name of a node
 * registeredNode registered.
 */
export function addressIn(blockOrNode: string): string {
  const podCidr = blockOrNode.includes("/") ? blockOrNode : blockOf.get(blockOrNode);
  if (podCidr === undefined) throw new Error(`addressIn: no pod CIDR known for node "${blockOrNode}" (register it with registeredNode)`);
  const [base, len] = podCidr.split("/") as [string, string];
  const start = base.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  // The block's first address is the node's L7 proxy address: workloads start at the second.
  const n = (handedOut.get(podCidr) ?? 1) + 1;
  if (n >= 2 ** (32 - Number(len)) - 1) throw new Error(`addressIn: the block ${podCidr} has no host address left`);
  handedOut.set(podCidr, n);
  const a = start + n;
  return [24, 16, 8, 0].map((s) => Math.floor(a / 2 ** s) % 256).join(".");
}

/** A fresh workload address on a node: addressIn, under the name older suites use. */
export const uniqueAddress = (blockOrNode: string): string => addressIn(blockOrNode);

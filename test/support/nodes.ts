import { randomInt } from "node:crypto";
import type { WeftApp } from "../../api/src/app.ts";
import { operator, uniqueName } from "./api.ts";

/** A fresh one-time join token from the operator. */
export async function joinToken(app: WeftApp, ttlSeconds?: number): Promise<{ id: string; token: string; expiresAt: string }> {
  const res = await app.inject({
    method: "POST",
    url: "/v1/join-tokens",
    headers: operator,
    payload: ttlSeconds === undefined ? {} : { ttlSeconds },
  });
  if (res.statusCode !== 201) throw new Error(`join token failed: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** Registers a node through the public route; answers its name and credential. */
export async function registeredNode(
  app: WeftApp,
  opts: { name?: string; zone?: string; labels?: Record<string, string> } = {},
): Promise<{ name: string; credential: string }> {
  const name = opts.name ?? uniqueName("node");
  const { token } = await joinToken(app);
  const res = await app.inject({
    method: "POST",
    url: "/v1/nodes/register",
    payload: { joinToken: token, name, zone: opts.zone ?? "zone-a", ...(opts.labels ? { labels: opts.labels } : {}) },
  });
  if (res.statusCode !== 201) throw new Error(`register failed: ${res.statusCode} ${res.body}`);
  return { name, credential: res.json().credential as string };
}

/**
 * A workload address no other test run is likely to hold: addresses are unique
 * across the platform, and suites on one Postgres keep their rows. 10.0.0.0/8
 * leaves 2^24 to draw from.
 */
export function uniqueAddress(): string {
  const n = randomInt(1, 2 ** 24 - 1);
  return `10.${n >> 16}.${(n >> 8) & 255}.${n & 255}`;
}

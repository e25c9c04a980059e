// Issue 7: the operator's resources besides tenants, through the real
// terraform binary: weft_join_token mints a token a node registers with,
// and weft_node reads that node back.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN, skipBackend, uniqueName } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { restClient, terraformUnavailable, Workspace } from "../support/terraform.ts";

const MAIN = `terraform {
  required_providers {
    weft = { source = "weft/weft" }
  }
}

provider "weft" {}

resource "weft_join_token" "node" {
  ttl_seconds = 900
  labels      = { rack = "r1" }
}

output "join_token" {
  value     = weft_join_token.node.token
  sensitive = true
}

output "expires_at" {
  value = weft_join_token.node.expires_at
}
`;

const NODE = `variable "node" {
  type = string
}

data "weft_node" "this" {
  name = var.node
}

output "zone" {
  value = data.weft_node.this.zone
}

output "labels" {
  value = data.weft_node.this.labels
}
`;

describe.skipIf(skipBackend("postgres") || skipWithout("terraform", terraformUnavailable()))(
  "weft_join_token and weft_node through terraform, on Postgres",
  () => {
    let api: ApiProcess;
    let ws: Workspace;
    const node = uniqueName("tf-join");

    beforeAll(async () => {
      api = await startApiProcess({ DATABASE_URL: process.env.DATABASE_URL!, WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN });
      ws = await Workspace.create({ WEFT_ENDPOINT: api.base, WEFT_TOKEN: OPERATOR_TOKEN });
      await ws.write("main.tf", MAIN);
    }, 120_000);

    afterAll(async () => {
      if (api) await restClient(api.base, OPERATOR_TOKEN)("DELETE", `/v1/nodes/${node}`).catch(() => undefined);
      await ws?.dispose();
      await api?.stop();
    }, 60_000);

    it("mints a join token, kept sensitive, that registers a node once; weft_node reads the node", async () => {
      const started = Date.now();
      const plan = await ws.plan();
      expect(plan.changes).toEqual([{ address: "weft_join_token.node", actions: ["create"] }]);
      // The schema marks the secret sensitive: Terraform redacts it.
      const planned = plan.json.resource_changes!.find((c) => c.address === "weft_join_token.node")!;
      expect((planned.change as { after_sensitive?: Record<string, unknown> }).after_sensitive).toMatchObject({ token: true });
      const applied = await ws.apply(plan.file);

      const state = await ws.state();
      const minted = state.get("weft_join_token.node")!;
      expect(minted.token).toMatch(/^weft_join_[A-Za-z0-9_-]{43}$/);
      const ttl = Date.parse(String(minted.expires_at)) - started;
      expect(ttl).toBeGreaterThan(850_000);
      expect(ttl).toBeLessThanOrEqual(900_000 + (Date.now() - started));
      expect(applied.stdout).not.toContain(String(minted.token));
      const shown = await ws.must(["output", "-no-color"]);
      expect(shown.stdout).toMatch(/join_token = <sensitive>/);
      expect(shown.stdout).not.toContain(String(minted.token));
      const raw = (await ws.must(["output", "-raw", "join_token"])).stdout;
      expect(raw).toBe(minted.token);

      expect(minted.labels).toEqual({ rack: "r1" });

      const register = (joinToken: string, name: string, labels?: Record<string, string>) =>
        fetch(`${api.base}/v1/nodes/register`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ joinToken, name, zone: "zone-tf", ...(labels ? { labels } : {}) }),
        });
      // The token fixes the node's labels: asking for others is refused and spends nothing.
      const claimed = await register(raw, node, { rack: "r1", pool: "pci" });
      expect(claimed.status, await claimed.text()).toBe(403);
      const first = await register(raw, node);
      expect(first.status, await first.text()).toBe(201);
      // One-time: the same token again is refused.
      expect((await register(raw, uniqueName("tf-join"))).status).toBe(401);

      // Nothing to change: the spent token stays in the state as it was.
      const again = await ws.plan();
      expect(again.exitCode, again.run.stdout).toBe(0);

      ws.vars.node = node;
      await ws.write("node.tf", NODE);
      await ws.apply();
      expect(await ws.outputs()).toMatchObject({ zone: "zone-tf", labels: { rack: "r1" } });
    }, 180_000);
  },
);

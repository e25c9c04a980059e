// The plugin layer under the real terraform binary (dev_overrides, no
// registry, no init). A test-only provider (plugin-fixture.ts) posing as
// weft/weft keeps its whole state in Terraform's, so this proves the
// protocol itself: schema, validation diagnostics pointing at the config
// line, plan with unknowns, apply, refresh, a clean second plan, import,
// destroy. The Weft provider's own behaviour against the API is proven by
// the e2e tests; here it only has to be loaded through the real executable.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { skipWithout } from "../support/prerequisites.ts";
import { REPO, Workspace, lineOf, terraformUnavailable } from "../support/terraform.ts";

const skip = skipWithout("terraform", terraformUnavailable());
const LONG = 180_000;

const CONFIG = `terraform {
  required_providers {
    weft = { source = "weft/weft" }
  }
}

provider "weft" {
  endpoint = "http://fixture.invalid"
}

variable "name" {
  default = "web"
}

resource "weft_thing" "a" {
  name     = var.name
  size     = 1.5
  enabled  = true
  tags     = { team = "mesh" }
  labels   = ["x", "y"]
  ports    = [80, 443]
  extra    = { nested = [1, "two"] }
  backends = [{ name = "stable" }, { name = "canary", weight = 10 }]
  spec     = { mode = "strict" }
}

data "weft_echo" "e" {
  input = weft_thing.a.id
}

output "echo" {
  value = data.weft_echo.e.output
}
`;

describe.skipIf(skip)("the plugin layer under terraform", () => {
  let bin: string;
  let ws: Workspace;

  beforeAll(async () => {
    // The fixture provider, served the way terraform/bin serves Weft's.
    bin = await mkdtemp(join(tmpdir(), "weft-plugin-bin-"));
    const script = join(bin, "terraform-provider-weft");
    await writeFile(
      script,
      `#!/bin/sh\nexec node --import ${JSON.stringify(join(REPO, "node_modules/tsx/dist/loader.mjs"))} ${JSON.stringify(join(REPO, "test/terraform/plugin-fixture-main.ts"))}\n`,
    );
    await chmod(script, 0o755);
    ws = await Workspace.create({}, bin);
    await ws.write("main.tf", CONFIG);
  });

  afterAll(async () => {
    await ws?.dispose();
    if (bin) await rm(bin, { recursive: true, force: true });
  });

  it(
    "validates, plans a create with unknowns, applies, and plans nothing the second time",
    async () => {
      await ws.must(["validate", "-no-color"]);

      const plan = await ws.plan();
      expect(plan.changes).toEqual([{ address: "weft_thing.a", actions: ["create"] }]);
      const created = plan.json.resource_changes!.find((c) => c.address === "weft_thing.a")!;
      expect(created.change.after_unknown).toMatchObject({ id: true, revision: true, backends: [{ weight: true }, {}] });
      expect(created.change.after).toMatchObject({ name: "web", size: 1.5, tags: { team: "mesh" }, extra: { nested: [1, "two"] }, spec: { mode: "strict" } });

      await ws.apply(plan.file);
      const state = await ws.state();
      expect(state.get("weft_thing.a")).toMatchObject({
        id: "thing-web",
        revision: 1,
        labels: ["x", "y"],
        ports: [80, 443],
        backends: [
          { name: "stable", weight: 1 },
          { name: "canary", weight: 10 },
        ],
      });
      expect(await ws.outputs()).toEqual({ echo: "echo: thing-web" });

      // Refresh (UpgradeResourceState, ReadResource) and plan again: nothing to do.
      const again = await ws.plan();
      expect(again.exitCode).toBe(0);
      expect(again.changes).toEqual([]);
    },
    LONG,
  );

  it(
    "points a validation error at the attribute's line, and plans a rename as a replace",
    async () => {
      ws.vars.name = "Web";
      const { run, diagnostics } = await ws.planDiagnostics();
      expect(run.code).toBe(1);
      const invalid = diagnostics.find((d) => d.summary === "Invalid name");
      expect(invalid, run.stdout).toBeDefined();
      expect(invalid!.severity).toBe("error");
      expect(invalid!.range?.start.line).toBe(lineOf(CONFIG, /^\s*name\s+= var\.name/));

      ws.vars.name = "other";
      const rename = await ws.plan();
      expect(rename.changes).toEqual([{ address: "weft_thing.a", actions: ["delete", "create"] }]);
      ws.vars.name = null;
    },
    LONG,
  );

  it(
    "imports by id and destroys",
    async () => {
      await ws.write("import.tf", `resource "weft_thing" "b" {\n  name = "imported"\n}\n`);
      await ws.importResource("weft_thing.b", "imported");
      expect((await ws.state()).get("weft_thing.b")).toMatchObject({ id: "thing-imported", name: "imported", revision: 1 });
      const plan = await ws.plan();
      expect(plan.changes).toEqual([]);

      await ws.destroy();
      expect((await ws.state()).size).toBe(0);
    },
    LONG,
  );

  it(
    "loads Weft's own provider through terraform/bin (dev_overrides \"weft/weft\")",
    async () => {
      const weft = await Workspace.create();
      try {
        await weft.write("main.tf", `terraform {\n  required_providers {\n    weft = { source = "weft/weft" }\n  }\n}\n`);
        const run = await weft.must(["providers", "schema", "-json"]);
        const schemas = JSON.parse(run.stdout) as { provider_schemas: Record<string, { resource_schemas: object; data_source_schemas: object; provider: { block: { attributes: Record<string, { sensitive?: boolean }> } } }> };
        const weftSchema = schemas.provider_schemas["registry.terraform.io/weft/weft"]!;
        expect(Object.keys(weftSchema.resource_schemas)).toEqual(
          expect.arrayContaining(["weft_tenant", "weft_identity", "weft_workload", "weft_service", "weft_policy", "weft_join_token"]),
        );
        expect(Object.keys(weftSchema.data_source_schemas)).toEqual(expect.arrayContaining(["weft_bundle", "weft_node"]));
        expect(weftSchema.provider.block.attributes.token!.sensitive).toBe(true);
      } finally {
        await weft.dispose();
      }
    },
    LONG,
  );
});

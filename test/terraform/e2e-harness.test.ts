// The harness of the Terraform end-to-end proof, checked on its own with the
// real terraform binary and its built-in terraform_data resource, so that a
// failure of the proof points at the provider, not at the harness.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { skipWithout } from "../support/prerequisites.ts";
import { lineOf, terraformUnavailable, Workspace } from "../support/terraform.ts";

const main = (input: string, trigger: string) => `
variable "input" {
  type    = string
  default = ${JSON.stringify(input)}
}

resource "terraform_data" "x" {
  input            = var.input
  triggers_replace = [${JSON.stringify(trigger)}]
}

output "x" {
  value = terraform_data.x.output
}
`;

describe.skipIf(skipWithout("terraform", terraformUnavailable()))("the terraform harness", () => {
  let ws: Workspace;
  beforeAll(async () => {
    ws = await Workspace.create();
  });
  afterAll(async () => ws?.dispose());

  it("plans, applies and reads back a configuration without init", async () => {
    await ws.write("main.tf", main("a", "t1"));
    const first = await ws.plan();
    expect(first.exitCode).toBe(2);
    expect(first.changes).toEqual([{ address: "terraform_data.x", actions: ["create"] }]);
    await ws.apply(first.file);
    expect(await ws.outputs()).toEqual({ x: "a" });
    expect((await ws.state()).get("terraform_data.x")).toMatchObject({ input: "a", output: "a" });

    const again = await ws.plan();
    expect(again.exitCode).toBe(0);
    expect(again.changes).toEqual([]);
  }, 60_000);

  it("tells an in-place update from a replacement, and -var reaches the configuration", async () => {
    ws.vars.input = "b";
    const update = await ws.plan();
    expect(update.exitCode).toBe(2);
    expect(update.changes).toEqual([{ address: "terraform_data.x", actions: ["update"] }]);
    await ws.apply(update.file);
    expect(await ws.outputs()).toEqual({ x: "b" });

    await ws.write("main.tf", main("b", "t2"));
    const replace = await ws.plan();
    expect(replace.changes).toEqual([{ address: "terraform_data.x", actions: ["delete", "create"] }]);
    await ws.apply(replace.file);
  }, 60_000);

  it("reads diagnostics from plan -json with the line they point at", async () => {
    const text = `${main("b", "t2")}\nresource "terraform_data" "y" {\n  input = var.missing\n}\n`;
    await ws.write("main.tf", text);
    const { run, diagnostics } = await ws.planDiagnostics();
    expect(run.code).toBe(1);
    const error = diagnostics.find((d) => d.severity === "error");
    expect(error, run.stdout).toBeDefined();
    expect(error!.range?.start.line).toBe(lineOf(text, /input = var\.missing/));
    await ws.write("main.tf", main("b", "t2"));
  }, 60_000);

  it("destroys", async () => {
    await ws.destroy();
    expect((await ws.state()).size).toBe(0);
  }, 60_000);

  it("uses dev_overrides for weft/weft with no init: a missing executable is looked for in the override directory", async () => {
    const empty = await mkdtemp(join(tmpdir(), "weft-tf-empty-"));
    const other = await Workspace.create({}, empty);
    try {
      await other.write("main.tf", `terraform {\n  required_providers {\n    weft = { source = "weft/weft" }\n  }\n}\n`);
      const run = await other.run(["plan", "-input=false", "-no-color"]);
      expect(run.code).toBe(1);
      const all = run.stdout + run.stderr;
      expect(all).toContain("Provider development overrides are in effect");
      expect(all).toContain(empty);
      expect(all).toMatch(/could not find executable\s+file starting with terraform-provider-weft/);
      // Not the message of a provider that needs `terraform init`.
      expect(all).not.toMatch(/terraform init/);
    } finally {
      await other.dispose();
      await rm(empty, { recursive: true, force: true });
    }
  }, 60_000);
});

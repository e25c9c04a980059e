import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { REPO } from "../support/terraform.ts";

// The README runs the curl walk-through, then the Terraform example, on one
// API: they must not fight over a tenant, and what Terraform leaves in the
// tree must not end up in a commit.

const readme = readFileSync(`${REPO}/README.md`, "utf8");
const section = (title: string) => readme.slice(readme.indexOf(`## ${title}`), readme.indexOf("\n## ", readme.indexOf(`## ${title}`) + 3));

describe("the Terraform example after the curl walk-through", () => {
  it("creates a tenant of its own, not one the walk-through creates", () => {
    const walkthrough = [...section("First steps with curl").matchAll(/"name":"([a-z0-9-]+)"/g)].map((m) => m[1]);
    expect(walkthrough).toContain("acme");
    const variables = readFileSync(`${REPO}/examples/canary/variables.tf`, "utf8");
    const tenant = /variable "tenant" \{[^}]*default\s*=\s*"([^"]+)"/.exec(variables)?.[1];
    expect(tenant).toBeDefined();
    expect(walkthrough).not.toContain(tenant);
    expect(section("Terraform")).toContain(tenant);
  });

  it("is run from the README in the walk-through's shell, with its operator token", () => {
    const terraform = section("Terraform");
    expect(terraform).toMatch(/#first-steps-with-curl/);
    expect(terraform).toContain("WEFT_TOKEN=$OP");
    expect(section("First steps with curl")).toMatch(/^OP=/m);
  });

  it("leaves nothing git would commit: state files and the CLI config are ignored", () => {
    const paths = ["weft.tfrc", "examples/canary/terraform.tfstate", "examples/canary/terraform.tfstate.backup", "examples/canary/.terraform/x"];
    const ignored = execFileSync("git", ["check-ignore", "--no-index", ...paths], { cwd: REPO, encoding: "utf8" }).trim().split("\n");
    expect(ignored).toEqual(paths);
  });
});

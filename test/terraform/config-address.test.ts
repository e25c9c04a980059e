import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { addressInConfig } from "../../terraform/src/weft/config-address.ts";

// The import hint's address, read from the root module's files: only a
// literal name of the block's own, in exactly one block of the type.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function module(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "weft-tf-address-"));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe("addressInConfig", () => {
  it("finds the block whose own name attribute is the literal, whatever nested objects call themselves", () => {
    const dir = module({
      "main.tf": `resource "weft_identity" "web" {
  tenant = weft_tenant.this.name
  name   = "web"
  path   = "/ns/prod/sa/web" # "}" in a string and a comment
}

resource "weft_policy" "ingress" {
  tenant  = weft_tenant.this.name
  subject = { identity = "web" }
  ingress = [{
    name = "web"
  }]
  name = "web-ingress"
}
`,
      "more.tf": `resource "weft_identity" "batch" {\n  name = "batch"\n}\n`,
      "notes.txt": `resource "weft_identity" "decoy" {\n  name = "web"\n}\n`,
    });
    expect(addressInConfig("weft_identity", "web", dir)).toBe("weft_identity.web");
    expect(addressInConfig("weft_identity", "batch", dir)).toBe("weft_identity.batch");
    expect(addressInConfig("weft_policy", "web-ingress", dir)).toBe("weft_policy.ingress");
    expect(addressInConfig("weft_policy", "web", dir)).toBeNull();
  });

  it("says nothing when the name is computed, ambiguous or absent", () => {
    const dir = module({
      "main.tf": `resource "weft_workload" "web" {
  for_each = local.addresses
  name     = "web-\${each.key}"
}
resource "weft_service" "a" {
  name = "api"
}
resource "weft_service" "b" {
  name = "api"
}
`,
    });
    expect(addressInConfig("weft_workload", "web-stable", dir)).toBeNull();
    expect(addressInConfig("weft_service", "api", dir)).toBeNull();
    expect(addressInConfig("weft_tenant", "x", dir)).toBeNull();
    expect(addressInConfig("weft_tenant", "x", join(dir, "missing"))).toBeNull();
  });
});

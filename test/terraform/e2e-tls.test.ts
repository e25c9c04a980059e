// Issue #19 item 1: the provider verifies the API's certificate. The real
// terraform binary against an API serving HTTPS with a certificate it issued
// itself (WEFT_TLS=self): without the operator CA the plan fails saying so;
// with ca_file (or WEFT_CA_FILE, or ca_pem) it applies and destroys.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN, uniqueName } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { terraformUnavailable, Workspace } from "../support/terraform.ts";

const main = (tenant: string, provider: string) => `terraform {
  required_providers {
    weft = { source = "weft/weft" }
  }
}

provider "weft" {
${provider}
}

resource "weft_tenant" "t" {
  name = ${JSON.stringify(tenant)}
}
`;

describe.skipIf(skipWithout("terraform", terraformUnavailable()))("the provider over HTTPS (WEFT_TLS=self, embedded database)", () => {
  let dir: string;
  let api: ApiProcess;
  let caFile: string;
  const workspaces: Workspace[] = [];
  const workspace = async (env: Record<string, string> = {}) => {
    const ws = await Workspace.create({ WEFT_ENDPOINT: api.base, WEFT_TOKEN: OPERATOR_TOKEN, ...env });
    workspaces.push(ws);
    return ws;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-tf-tls-"));
    api = await startApiProcess({ WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, WEFT_DATA_DIR: join(dir, "data"), DATABASE_URL: "", WEFT_TLS: "self", WEFT_HTTP2: "1" });
    caFile = join(dir, "operator-ca.pem");
  }, 120_000);
  afterAll(async () => {
    for (const ws of workspaces) await ws.dispose();
    await api?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("refuses an API whose certificate it cannot verify, naming ca_file", async () => {
    const ws = await workspace();
    await ws.write("main.tf", main(uniqueName("tf-tls"), ""));
    const { run, diagnostics } = await ws.planDiagnostics();
    expect(run.code).toBe(1);
    const error = diagnostics.find((d) => d.severity === "error");
    expect(error?.detail, run.stdout).toMatch(/the API's certificate is not trusted; set the provider's ca_file/);
  }, 120_000);

  it("applies and destroys with ca_file", async () => {
    const tenant = uniqueName("tf-tls");
    const ws = await workspace();
    await ws.write("main.tf", main(tenant, `  ca_file = ${JSON.stringify(caFile)}`));
    const plan = await ws.plan();
    expect(plan.changes).toEqual([{ address: "weft_tenant.t", actions: ["create"] }]);
    await ws.apply(plan.file);
    expect((await ws.state()).get("weft_tenant.t")).toMatchObject({ name: tenant });
    expect((await ws.plan()).exitCode).toBe(0);
    await ws.destroy();
    expect((await ws.state()).size).toBe(0);
  }, 180_000);

  it("takes the CA as ca_pem or from WEFT_CA_FILE too, and refuses a ca_file that holds no certificate", async () => {
    const inline = await workspace();
    await inline.write("main.tf", main(uniqueName("tf-tls"), `  ca_pem = ${JSON.stringify(readFileSync(caFile, "utf8"))}`));
    expect((await inline.plan()).changes).toEqual([{ address: "weft_tenant.t", actions: ["create"] }]);

    const fromEnv = await workspace({ WEFT_CA_FILE: caFile });
    await fromEnv.write("main.tf", main(uniqueName("tf-tls"), ""));
    expect((await fromEnv.plan()).changes).toEqual([{ address: "weft_tenant.t", actions: ["create"] }]);

    const bad = await workspace();
    await bad.write("not-a-ca.pem", "not a certificate\n");
    await bad.write("main.tf", main(uniqueName("tf-tls"), `  ca_file = ${JSON.stringify(join(bad.dir, "not-a-ca.pem"))}`));
    const { run, diagnostics } = await bad.planDiagnostics();
    expect(run.code).toBe(1);
    expect(diagnostics.find((d) => d.severity === "error")).toMatchObject({ summary: "Invalid ca_file", detail: expect.stringMatching(/no PEM certificate/) });
  }, 180_000);
});

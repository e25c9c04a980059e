// Issue 7, proof: what the API would refuse is refused at `terraform plan`
// (the provider plans with ?dryRun=true), as a diagnostic on the attribute,
// and nothing is written: a bad name, a bad value only the API can judge,
// and a policy that would overflow a node's policy map. Also: a name change
// plans a replacement, and state of an older schema version is upgraded.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN, skipBackend, uniqueName } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { uniqueAddress } from "../support/nodes.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { lineOf, registerNode, restClient, terraformUnavailable, Workspace, type JsonDiagnostic, type Plan } from "../support/terraform.ts";

/** Room in every node's policy map for this API process: small enough to overflow with one policy. */
const POLICY_CAPACITY = 12;
const STEP_MS = 300_000;

const PROVIDER = `terraform {
  required_providers {
    weft = { source = "weft/weft" }
  }
}

variable "tenant" {
  type = string
}

variable "node" {
  type = string
}

variable "address" {
  type = string
}

variable "endpoint" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

# Configured here rather than through WEFT_ENDPOINT and WEFT_TOKEN (the other suites' way).
provider "weft" {
  endpoint = var.endpoint
  token    = var.token
}
`;

/** On a node: an identity and a workload of it, so policies for "web" land in that node's policy map. */
const BASE = `resource "weft_identity" "web" {
  tenant    = var.tenant
  name      = "web"
  path      = "/ns/prod/sa/web"
  selectors = { app = "web" }
}

resource "weft_workload" "web" {
  tenant    = var.tenant
  name      = "web-1"
  identity  = weft_identity.web.name
  node      = var.node
  addresses = [var.address]
}
`;

const errorsOf = (diagnostics: JsonDiagnostic[]) => diagnostics.filter((d) => d.severity === "error");

describe.skipIf(skipBackend("postgres") || skipWithout("terraform", terraformUnavailable()))(
  "terraform plan against the API on Postgres: refusals, replacement, state upgrade",
  () => {
    let api: ApiProcess;
    let ws: Workspace;
    let rest: ReturnType<typeof restClient>;
    const tenant = uniqueName("tfplan");
    const node = uniqueName("tf-node");
    const t = (path: string) => `/v1/tenants/${tenant}${path}`;

    /** Every change the tenant's log holds: equal before and after means nothing was written. */
    const changeLog = async () => {
      const res = await rest("GET", t("/changes?limit=1000"));
      expect(res.status, res.text).toBe(200);
      return res.body.items as unknown[];
    };

    beforeAll(async () => {
      api = await startApiProcess({
        DATABASE_URL: process.env.DATABASE_URL!,
        WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN,
        WEFT_MAP_CAPACITY_POLICY: String(POLICY_CAPACITY),
      });
      rest = restClient(api.base, OPERATOR_TOKEN);
      const created = await rest("POST", "/v1/tenants", { name: tenant });
      if (created.status !== 201) throw new Error(`tenant: ${created.status} ${created.text}`);
      const podCidr = await registerNode(api.base, OPERATOR_TOKEN, node);
      ws = await Workspace.create();
      Object.assign(ws.vars, { tenant, node, address: uniqueAddress(podCidr), endpoint: api.base, token: OPERATOR_TOKEN });
      await ws.write("main.tf", PROVIDER);
      await ws.write("base.tf", BASE);
      await ws.apply();
    }, 180_000);

    afterAll(async () => {
      if (rest) {
        await rest("DELETE", t("")).catch(() => undefined);
        await rest("DELETE", `/v1/nodes/${node}`).catch(() => undefined);
      }
      await ws?.dispose();
      await api?.stop();
    }, 60_000);

    /** Plans with one more file and answers the errors; the file is removed again. */
    async function planWith(file: string, text: string) {
      await ws.write(file, text);
      try {
        const before = await changeLog();
        const { run, diagnostics } = await ws.planDiagnostics();
        expect(run.code, run.stdout + run.stderr).toBe(1);
        expect(await changeLog()).toEqual(before);
        const errors = errorsOf(diagnostics);
        expect(errors.length, run.stdout).toBeGreaterThan(0);
        return { run, errors };
      } finally {
        await ws.remove(file);
      }
    }

    it("the base configuration applied: the workload is on the node", async () => {
      const res = await rest("GET", t("/workloads/web-1"));
      expect(res.status, res.text).toBe(200);
      expect(res.body.node).toBe(node);
      const plan = await ws.plan();
      expect(plan.exitCode, plan.run.stdout).toBe(0);
    }, STEP_MS);

    it("a bad name fails at plan with a diagnostic on the name attribute", async () => {
      const text = `resource "weft_identity" "bad" {
  tenant = var.tenant
  name   = "Bad_Name"
  path   = "/ns/prod/sa/bad"
}
`;
      const { run, errors } = await planWith("bad.tf", text);
      const onName = errors.find((d) => d.range?.filename === "bad.tf" && d.range.start.line === lineOf(text, /name\s+= "Bad_Name"/));
      expect(onName, run.stdout).toBeDefined();
      expect(onName!.snippet?.code).toContain("Bad_Name");
      // Not created, and not even a name the API would look up: a path name must be a DNS label.
      const read = await rest("GET", t("/identities/Bad_Name"));
      expect(read.status, read.text).toBe(400);
      expect(read.body.errors).toContainEqual({ field: "path.name", message: expect.stringMatching(/DNS label/) });
    }, STEP_MS);

    it("a value only the API judges (a '..' segment in a SPIFFE path) fails at plan on that attribute", async () => {
      const text = `resource "weft_identity" "dots" {
  tenant = var.tenant
  name   = "dots"
  path   = "/ns/../web"
}
`;
      const { run, errors } = await planWith("dots.tf", text);
      const onPath = errors.find((d) => d.range?.filename === "dots.tf" && d.range.start.line === lineOf(text, /path\s+= "\/ns\/\.\.\/web"/));
      expect(onPath, run.stdout).toBeDefined();
      expect(`${onPath!.summary} ${onPath!.detail}`).toMatch(/'\.\.'/);
      expect((await rest("GET", t("/identities/dots"))).status).toBe(404);
    }, STEP_MS);

    it("an error the API names inside a list (a port listed twice) points into that list", async () => {
      const text = `resource "weft_service" "twice" {
  tenant = var.tenant
  name   = "twice"
  ports = [
    { port = 80, protocol = "tcp", target_port = 8080 },
    { port = 80, protocol = "tcp", target_port = 8081 },
  ]
  backends = {
    explicit = [{ address = "192.0.2.10", weight = 1 }]
  }
}
`;
      const { run, errors } = await planWith("twice.tf", text);
      const first = lineOf(text, /ports = \[/);
      const last = lineOf(text, /target_port = 8081/);
      const inPorts = errors.find((d) => d.range?.filename === "twice.tf" && d.range.start.line >= first && d.range.start.line <= last);
      expect(inPorts, run.stdout).toBeDefined();
      expect(`${inPorts!.summary} ${inPorts!.detail}`).toContain("80/tcp");
      expect((await rest("GET", t("/services/twice"))).status).toBe(404);
    }, STEP_MS);

    it("a policy that would overflow the node's policy map fails at plan with the 422, and nothing is written", async () => {
      const ports = Array.from({ length: 20 }, (_, i) => `{ port = ${3000 + i}, protocol = "tcp" }`).join(", ");
      const text = `resource "weft_policy" "wide" {
  tenant  = var.tenant
  name    = "wide"
  subject = { identity = weft_identity.web.name }
  ingress = [
    { ports = [${ports}], action = "allow" },
  ]
}
`;
      const { run, errors } = await planWith("wide.tf", text);
      const overflow = errors.find((d) => d.range?.filename === "wide.tf" && /policy/.test(`${d.summary} ${d.detail}`) && d.detail.includes(node));
      expect(overflow, run.stdout).toBeDefined();
      expect(overflow!.detail).toMatch(new RegExp(`has room for ${POLICY_CAPACITY}`));
      expect((await rest("GET", t("/policies/wide"))).status).toBe(404);

      // The same policy with few ports fits, so the refusal was the map's.
      const small = text.replace(ports, `{ port = 3000, protocol = "tcp" }`);
      await ws.write("small.tf", small);
      try {
        const plan = await ws.plan();
        expect(plan.changes).toEqual([{ address: "weft_policy.wide", actions: ["create"] }]);
      } finally {
        await ws.remove("small.tf");
      }
    }, STEP_MS);

    it("a name change plans a replacement, not an update; the apply replaces", async () => {
      const solo = (name: string, path: string) => `resource "weft_identity" "solo" {
  tenant = var.tenant
  name   = "${name}"
  path   = "${path}"
}
`;
      await ws.write("solo.tf", solo("solo", "/ns/prod/sa/solo"));
      await ws.apply();
      const before = await rest("GET", t("/identities/solo"));
      expect(before.status, before.text).toBe(200);

      const replaced = (plan: Plan) => {
        const change = plan.json.resource_changes!.find((c) => c.address === "weft_identity.solo")!;
        expect(change.change.actions).toEqual(["delete", "create"]);
        expect((change.change as { replace_paths?: unknown }).replace_paths).toEqual([["name"]]);
        expect(plan.changes).toEqual([{ address: "weft_identity.solo", actions: ["delete", "create"] }]);
      };
      try {
        // A new name and a new path: nothing the new identity could collide with.
        await ws.write("solo.tf", solo("solo-2", "/ns/prod/sa/solo-2"));
        replaced(await ws.plan());

        // A new name only: the new identity takes the SPIFFE ID the old one frees
        // (Terraform deletes before it creates), so the plan must not refuse it.
        await ws.write("solo.tf", solo("solo-2", "/ns/prod/sa/solo"));
        const plan = await ws.plan();
        replaced(plan);
        await ws.apply(plan.file);
        expect((await rest("GET", t("/identities/solo"))).status).toBe(404);
        const after = await rest("GET", t("/identities/solo-2"));
        expect(after.status, after.text).toBe(200);
        expect(after.body.spiffeId).toBe(before.body.spiffeId);

        // -replace of an unchanged resource: Terraform plans the new object while the old one, same id,
        // still exists; the plan's create-only check must not call that "already exists".
        const forced = await ws.plan(["-replace=weft_identity.solo"]);
        const change = forced.json.resource_changes!.find((c) => c.address === "weft_identity.solo")!;
        expect(change.change.actions).toEqual(["delete", "create"]);
        await ws.apply(forced.file);
        const recreated = await rest("GET", t("/identities/solo-2"));
        expect(recreated.status, recreated.text).toBe(200);
        expect(recreated.body.etag).not.toBe(after.body.etag);
      } finally {
        // Back to the base configuration for the tests after this one.
        await ws.remove("solo.tf");
        await ws.apply();
      }
    }, STEP_MS);

    it("state written under schema version 0 is upgraded (UpgradeResourceState) and plans no change", async () => {
      const file = join(ws.dir, "terraform.tfstate");
      const state = JSON.parse(await readFile(file, "utf8")) as {
        resources: { type: string; name: string; instances: { schema_version: number; attributes: Record<string, unknown> }[] }[];
      };
      const identity = state.resources.find((r) => r.type === "weft_identity" && r.name === "web")!.instances[0]!;
      const current = identity.schema_version;
      expect(current).toBeGreaterThan(0);
      identity.schema_version = 0;
      // An attribute that version did not store: the upgrade fills it, the refresh reads it.
      delete identity.attributes.etag;
      await writeFile(file, JSON.stringify(state, null, 2));

      const plan = await ws.plan();
      expect(plan.changes).toEqual([]);
      expect(plan.exitCode, plan.run.stdout).toBe(0);
      await ws.must(["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color", ...ws.varArgs()]);
      const after = JSON.parse(await readFile(file, "utf8")) as typeof state;
      const upgraded = after.resources.find((r) => r.type === "weft_identity" && r.name === "web")!.instances[0]!;
      expect(upgraded.schema_version).toBe(current);
      const live = await rest("GET", t("/identities/web"));
      expect(String(upgraded.attributes.etag).replace(/"/g, "")).toBe(String(live.body.etag).replace(/"/g, ""));
    }, STEP_MS);
  },
);

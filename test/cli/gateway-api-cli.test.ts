// The real `weft` binary against the real API on loopback (PGlite): a Gateway
// API HTTPRoute (YAML and JSON) applied with `weft apply -f`, shown back with
// `weft get httpRoutes NAME -o gateway` and applied again unchanged; what
// Weft does not do is refused by its path in the document before anything
// is written; another tenant's namespace is never reached.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { WeftApp } from "../../api/src/app.ts";
import { bearer, currentRevision, startApi, tenantWithToken } from "../support/api.ts";
import { identity, mustPut } from "../support/mesh.ts";
import { runWeft } from "../support/weft-cli.ts";

let app: WeftApp;
let endpoint: string;
let dir: string;

beforeAll(async () => {
  app = await startApi("pglite");
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as { port: number };
  endpoint = `http://127.0.0.1:${port}`;
  dir = mkdtempSync(join(tmpdir(), "weft-gw-cli-"));
});

afterAll(async () => {
  await app?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const as = (token: string) => {
  const home = mkdtempSync(join(dir, "home-"));
  return { HOME: home, WEFT_CONFIG: join(home, ".config", "weft", "config.json"), WEFT_ENDPOINT: endpoint, WEFT_TOKEN: token };
};

const ROUTE = (namespace: string, v2: number) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-split
  namespace: ${namespace}
spec:
  parentRefs:
  - {group: "", kind: Service, name: web, port: 80}
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs:
    - {name: web-v1, port: 80, weight: ${100 - v2}}
    - {name: web-v2, port: 80, weight: ${v2}}
    timeouts: {request: 2s, backendRequest: 500ms}
`;

async function tenantWithServices() {
  const t = await tenantWithToken(app, ["admin"]);
  await identity(app, t.token, t.tenant, "web", { app: "web" });
  for (const [name, targetPort] of [["web", 8080], ["web-v1", 9001], ["web-v2", 9002]] as const) {
    await mustPut(app, t.token, t.tenant, `services/${name}`, { ports: [{ port: 80, protocol: "tcp", targetPort }], backends: { selector: { identity: "web" } } });
  }
  return t;
}

describe("Gateway API HTTPRoutes through weft apply and weft get", { timeout: 90_000 }, () => {
  it("applies one, shows it back as Gateway API YAML that applies unchanged, and takes JSON", async () => {
    const { tenant, token } = await tenantWithServices();
    const env = as(token);
    const path = join(dir, `${tenant}-route.yaml`);
    writeFileSync(path, ROUTE(tenant, 10));
    const created = await runWeft(["apply", "-f", path], env);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain(`httpRoute/web-split (tenant ${tenant}) created\n`);
    const stored = (await app.inject({ url: `/v1/tenants/${tenant}/httpRoutes/web-split`, headers: bearer(token) })).json();
    expect(stored.rules[0].backendRefs).toEqual([
      { kind: "Service", name: "web-v1", port: 80, weight: 90 },
      { kind: "Service", name: "web-v2", port: 80, weight: 10 },
    ]);

    const shown = await runWeft(["get", "httpRoutes", "web-split", "-o", "gateway", "--tenant", tenant], env);
    expect(shown.code, shown.stderr).toBe(0);
    const doc = parseYaml(shown.stdout);
    expect(doc).toMatchObject({ apiVersion: "gateway.networking.k8s.io/v1", kind: "HTTPRoute", metadata: { name: "web-split", namespace: tenant } });
    expect(doc.spec.rules[0].backendRefs.map((r: { name: string; weight: number }) => [r.name, r.weight])).toEqual([["web-v1", 90], ["web-v2", 10]]);
    const again = await runWeft(["apply", "-f", "-"], env, { input: shown.stdout });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`httpRoute/web-split (tenant ${tenant}) unchanged\n`);

    // JSON, a new split: one field changes.
    const json = JSON.stringify({ ...doc, spec: { ...doc.spec, rules: [{ ...doc.spec.rules[0], backendRefs: [{ ...doc.spec.rules[0].backendRefs[0], weight: 50 }, { ...doc.spec.rules[0].backendRefs[1], weight: 50 }] }] } });
    const changed = await runWeft(["apply", "-f", "-"], env, { input: json });
    expect(changed.code, changed.stderr).toBe(0);
    expect(changed.stdout).toContain("~ rules[0].backendRefs[0].weight: 90 -> 50\n");
    // -o gateway is for routes only.
    const wrongKind = await runWeft(["get", "services", "-o", "gateway", "--tenant", tenant], env);
    expect(wrongKind.code).toBe(2);
  });

  it("refuses what does not map by its path in the document, the API's refusals by the document's spec path, and another tenant's namespace", async () => {
    const { tenant, token } = await tenantWithServices();
    const other = await tenantWithServices();
    const env = as(token);
    const revision = await currentRevision(app);
    const mirror = ROUTE(tenant, 10).replace("    timeouts:", "    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web-v2, port: 80}}}]\n    timeouts:");
    const refused = await runWeft(["apply", "-f", "-"], env, { input: mirror });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("spec.rules[0].filters[0].type: RequestMirror is not supported");
    // Another tenant's namespace is refused before any request: with --tenant, and as a reference inside the route.
    const theirs = await runWeft(["apply", "-f", "-", "--tenant", tenant], env, { input: ROUTE(other.tenant, 10) });
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toContain(`metadata.namespace: is "${other.tenant}" but the tenant is "${tenant}"`);
    const crossRef = ROUTE(tenant, 10).replace("{name: web-v2, port: 80,", `{name: web-v2, namespace: ${other.tenant}, port: 80,`);
    const reached = await runWeft(["apply", "-f", "-"], env, { input: crossRef });
    expect(reached.code).toBe(1);
    expect(reached.stderr).toContain("spec.rules[0].backendRefs[1].namespace");
    // With this tenant's token, the other tenant's namespace is theirs: the API answers as if it did not exist.
    const foreign = await runWeft(["apply", "-f", "-"], env, { input: ROUTE(other.tenant, 10) });
    expect(foreign.code).toBe(1);
    expect(await currentRevision(app)).toBe(revision);
    // The API's refusal of a service the tenant lacks names the field in the document.
    const missing = await runWeft(["apply", "-f", "-"], env, { input: ROUTE(tenant, 10).replace("name: web-v2", "name: web-v9") });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("Unprocessable Content (422)");
    expect(missing.stderr).toContain('spec.rules[0].backendRefs[1].name: no service "web-v9" in this tenant');
    expect(await currentRevision(app)).toBe(revision);
  });
});

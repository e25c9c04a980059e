// The real `weft` binary, run as a child process against the real API
// listening on loopback (PGlite): login, apply (many documents, dry run,
// diffs, refusals with field errors), get in every output, delete, status,
// svid (checked by openssl), tenant isolation and usage errors. Each run of
// the binary costs a Node start (1-2 s on a loaded 2-core machine): hence
// the long timeouts.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { WeftApp } from "../../api/src/app.ts";
import { listAll } from "../../cli/src/client.ts";
import { ROUTES } from "../../cli/src/routes.ts";
import { bearer, currentRevision, OPERATOR_TOKEN, operator, startApi, tenantWithToken, uniqueName } from "../support/api.ts";
import { addressIn, registeredNode } from "../support/nodes.ts";
import { runWeft } from "../support/weft-cli.ts";

let app: WeftApp;
let endpoint: string;
let dir: string;

beforeAll(async () => {
  app = await startApi("pglite");
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as { port: number };
  endpoint = `http://127.0.0.1:${port}`;
  dir = mkdtempSync(join(tmpdir(), "weft-cli-"));
});

afterAll(async () => {
  await app?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A home of its own per test: the config file is the thing under test. */
function home() {
  const h = mkdtempSync(join(dir, "home-"));
  return { HOME: h, WEFT_CONFIG: join(h, ".config", "weft", "config.json") };
}

/** The weft command with a tenant's (or the operator's) token from the environment. */
const as = (token: string) => ({ ...home(), WEFT_ENDPOINT: endpoint, WEFT_TOKEN: token });

function file(name: string, text: string): string {
  const path = join(dir, `${randomPart()}-${name}`);
  writeFileSync(path, text);
  return path;
}
const randomPart = () => Math.random().toString(36).slice(2, 8);

const mode = (path: string) => statSync(path).mode & 0o777;

describe("weft login", { timeout: 90_000 }, () => {
  it("saves the endpoint and a token read from a file, mode 0600 in a 0700 directory; later commands use them", async () => {
    const env = home();
    const tokenFile = file("token", `${OPERATOR_TOKEN}\n`);
    const r = await runWeft(["login", "--endpoint", `${endpoint}/`, "--token-file", tokenFile], env);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("as the operator");
    expect(mode(env.WEFT_CONFIG)).toBe(0o600);
    expect(mode(join(env.HOME, ".config", "weft"))).toBe(0o700);
    expect(JSON.parse(readFileSync(env.WEFT_CONFIG, "utf8"))).toEqual({ endpoint, token: OPERATOR_TOKEN });
    const tenants = await runWeft(["get", "tenants", "-o", "json"], env);
    expect(tenants.code, tenants.stderr).toBe(0);
    expect(tenants.stderr).toBe("");
    expect(Array.isArray(JSON.parse(tenants.stdout))).toBe(true);
    // Opened up by something else: every command says so, as ssh does of a key.
    chmodSync(env.WEFT_CONFIG, 0o644);
    const exposed = await runWeft(["get", "tenants", "-o", "json"], env);
    expect(exposed.code).toBe(0);
    expect(exposed.stderr).toBe(`warning: ${env.WEFT_CONFIG} holds a token and others may read it (mode 0644): chmod 600 ${env.WEFT_CONFIG}\n`);
    // Logging in again writes it 0600 again.
    expect((await runWeft(["login", "--endpoint", endpoint], env)).code).toBe(0);
    expect(mode(env.WEFT_CONFIG)).toBe(0o600);
  });

  it("reads the token from stdin, stores a default tenant, and the environment overrides the file", async () => {
    const { tenant, token } = await tenantWithToken(app, ["read"]);
    const env = home();
    const r = await runWeft(["login", "--endpoint", endpoint, "--tenant", tenant, "--token-stdin"], env, { input: `${token}\n` });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`as tenant ${tenant}`);
    expect(readFileSync(env.WEFT_CONFIG, "utf8")).toContain(`"tenant": "${tenant}"`);
    const mine = await runWeft(["get", "identities"], env);
    expect(mine.code, mine.stderr).toBe(0);
    // WEFT_TOKEN wins over the saved token: a bad one is refused.
    const overridden = await runWeft(["get", "identities"], { ...env, WEFT_TOKEN: "weft_op_not-the-token-0123456789abcdef" });
    expect(overridden.code).toBe(1);
    expect(overridden.stderr).toMatch(/^error: .*\(401\)/);
  });

  it("refuses a bad token and saves nothing; warns when the token is in argv", async () => {
    const env = home();
    const bad = await runWeft(["login", "--endpoint", endpoint, "--token", "weft_op_wrong-token-0123456789abcdef"], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("visible to ps");
    expect(bad.stderr).toContain("refused the token");
    expect(existsSync(env.WEFT_CONFIG)).toBe(false);
    const another = await tenantWithToken(app, ["read"]);
    const other = await tenantWithToken(app, ["read"]);
    const wrongTenant = await runWeft(["login", "--endpoint", endpoint, "--tenant", other.tenant, "--token-stdin"], env, { input: another.token });
    expect(wrongTenant.code).toBe(1);
    expect(wrongTenant.stderr).toContain(`tenant "${other.tenant}" does not exist, or this token is not one of its tokens`);
    expect(existsSync(env.WEFT_CONFIG)).toBe(false);
    const unreachable = await runWeft(["login", "--endpoint", "http://127.0.0.1:1", "--token-stdin"], env, { input: OPERATOR_TOKEN });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain("cannot reach the API at http://127.0.0.1:1");
    const notUrl = await runWeft(["login", "--endpoint", "ftp://x", "--token-stdin"], env, { input: OPERATOR_TOKEN });
    expect(notUrl.code).toBe(1);
    expect(notUrl.stderr).toContain("must be http:// or https://");
  });
});

const MESH = (tenant: string, dbPort: number) => `
kind: Identity
metadata: {name: web, tenant: ${tenant}}
spec: {path: /ns/prod/sa/web}
---
kind: Identity
metadata: {name: db, tenant: ${tenant}}
spec: {path: /ns/prod/sa/db}
---
kind: Service
metadata: {name: db, tenant: ${tenant}}
spec:
  ports: [{port: ${dbPort}, protocol: tcp, targetPort: 5432}]
  backends: {selector: {identity: db}}
---
kind: Policy
metadata: {name: db-ingress, tenant: ${tenant}}
spec:
  subject: {identity: db}
  ingress:
    - peers: [{identity: web}]
      ports: [{port: 5432, protocol: tcp}]
      action: allow
`;

describe("weft apply, get, delete", { timeout: 90_000 }, () => {
  it("applies a file of documents: a dry run writes nothing, then creates, then shows field changes", async () => {
    const { tenant, token } = await tenantWithToken(app);
    const env = as(token);
    const mesh = file("mesh.yaml", MESH(tenant, 5432));
    // A dry run checks each document against what exists, not against the
    // documents before it: the service's selector needs the identity to exist.
    const identities = MESH(tenant, 5432).split("---").slice(0, 2).join("---");
    expect((await runWeft(["apply", "-f", "-"], env, { input: identities })).stdout).toContain("2 documents: 2 created\n");

    const revision = await currentRevision(app);
    const dry = await runWeft(["apply", "-f", mesh, "--dry-run"], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`identity/web (tenant ${tenant}) unchanged (dry run)\n`);
    expect(dry.stdout).toContain(`service/db (tenant ${tenant}) created (dry run)\n`);
    expect(dry.stdout).toContain("    + ports[0].port: 5432\n");
    expect(dry.stdout).toContain(`policy/db-ingress (tenant ${tenant}) created (dry run)\n    + subject.identity: "db"\n`);
    expect(dry.stdout).toContain("4 documents: 2 created, 2 unchanged (dry run: nothing written)");
    expect(await currentRevision(app)).toBe(revision);
    expect((await app.inject({ url: `/v1/tenants/${tenant}/services/db`, headers: bearer(token) })).statusCode).toBe(404);

    const created = await runWeft(["apply", "-f", mesh], env);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain("4 documents: 2 created, 2 unchanged\n");
    const policy = await app.inject({ url: `/v1/tenants/${tenant}/policies/db-ingress`, headers: bearer(token) });
    expect(policy.json()).toMatchObject({ subject: { identity: "db" }, ingress: [{ action: "allow" }] });

    const changed = await runWeft(["apply", "-f", file("mesh2.yaml", MESH(tenant, 5433))], env);
    expect(changed.code, changed.stderr).toBe(0);
    expect(changed.stdout).toContain(`service/db (tenant ${tenant}) configured\n    ~ ports[0].port: 5432 -> 5433\n`);
    expect(changed.stdout).toContain(`policy/db-ingress (tenant ${tenant}) unchanged\n`);
    expect(changed.stdout).toContain("4 documents: 1 configured, 3 unchanged");
    const service = await app.inject({ url: `/v1/tenants/${tenant}/services/db`, headers: bearer(token) });
    expect(service.json().ports[0].port).toBe(5433);
  });

  it("never overwrites a change made between its read and its write: the PUT carries the ETag it read (412)", async () => {
    const { tenant, token } = await tenantWithToken(app);
    const env = as(token);
    const mesh = file("mesh.yaml", MESH(tenant, 5432));
    expect((await runWeft(["apply", "-f", mesh], env)).code).toBe(0);
    // A loopback proxy in front of the API that lets someone else write the service just before weft's PUT reaches it.
    const servicePath = `/v1/tenants/${tenant}/services/db`;
    const proxy = createServer((req, res) => {
      const forward = async () => {
        if (req.method === "PUT" && req.url === servicePath) {
          const other = await app.inject({ method: "PUT", url: servicePath, headers: bearer(token), payload: { ports: [{ port: 6000, protocol: "tcp", targetPort: 5432 }], backends: { selector: { identity: "db" } } } });
          expect(other.statusCode).toBe(200);
        }
        const upstream = httpRequest(`${endpoint}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
          res.writeHead(up.statusCode!, up.headers);
          up.pipe(res);
        });
        req.pipe(upstream);
      };
      void forward();
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    try {
      const via = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
      const r = await runWeft(["apply", "-f", file("mesh2.yaml", MESH(tenant, 5433))], { ...env, WEFT_ENDPOINT: via });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^error: service/db \\(tenant ${tenant}\\) from .*: Precondition Failed \\(412\\)`));
      const kept = await app.inject({ url: servicePath, headers: bearer(token) });
      expect(kept.json().ports[0].port).toBe(6000);
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it("reads a JSON array, and a Tenant document with the operator's token", async () => {
    const tenant = uniqueName("cli");
    const docs = [
      { kind: "Tenant", metadata: { name: tenant }, spec: { displayName: "From the CLI", labels: { team: "a" } } },
      { kind: "identities", metadata: { name: "api", tenant }, spec: { path: "/api" } },
    ];
    const r = await runWeft(["apply", "-f", file("docs.json", JSON.stringify(docs))], as(OPERATOR_TOKEN));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`tenant/${tenant} created\n    + displayName: "From the CLI"\n    + labels.team: "a"\n`);
    const read = await app.inject({ url: `/v1/tenants/${tenant}/identities/api`, headers: operator });
    expect(read.json().spiffeId).toBe(`spiffe://${tenant}.test.weft/api`);
  });

  it("stops at the first refusal, printing the problem and each field error by the document's path", async () => {
    const { tenant, token } = await tenantWithToken(app);
    const env = as(token);
    const text = `
kind: Identity
metadata: {name: web, tenant: ${tenant}}
spec: {path: /web}
---
kind: Service
metadata: {name: bad, tenant: ${tenant}}
spec:
  ports: [{port: 70000, protocol: tcp, targetPort: 80}]
  backends: {selector: {}}
---
kind: Identity
metadata: {name: never, tenant: ${tenant}}
spec: {path: /never}
`;
    const r = await runWeft(["apply", "-f", file("bad.yaml", text)], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`identity/web (tenant ${tenant}) created`);
    expect(r.stderr).toMatch(new RegExp(`^error: service/bad \\(tenant ${tenant}\\) from .*bad\\.yaml, document 2 \\(line 6\\): Bad Request \\(400\\)`));
    expect(r.stderr).toContain("\n  spec.ports[0].port: must be <= 65535\n");
    expect(r.stderr).toMatch(/\n {2}request id: \S+\n$/);
    expect((await app.inject({ url: `/v1/tenants/${tenant}/identities/never`, headers: bearer(token) })).statusCode).toBe(404);

    // 422: valid shape, refused by the domain.
    const unplaced = `kind: Workload\nmetadata: {name: w, tenant: ${tenant}}\nspec: {identity: web, node: nowhere, addresses: [198.19.0.9]}\n`;
    const refused = await runWeft(["apply", "-f", "-"], env, { input: unplaced });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("Unprocessable Content (422)");
    expect(refused.stderr).toContain('\n  spec.node: no node "nowhere" is registered\n');
  });

  it("refuses a document it cannot read before writing anything (exit 1), and a bad command line with exit 2", async () => {
    const { tenant, token } = await tenantWithToken(app);
    const env = as(token);
    const revision = await currentRevision(app);
    const text = `kind: Identity\nmetadata: {name: a, tenant: ${tenant}}\nspec: {path: /a}\n---\nkind: Identity\nmetadata: {name: b}\nspecs: {}\n`;
    const r = await runWeft(["apply", "-f", file("typo.yaml", text)], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/document 2 \(line 5\): unknown top-level field "specs"/);
    expect(await currentRevision(app)).toBe(revision);

    for (const args of [[], ["frobnicate"], ["get"], ["get", "gadgets"], ["get", "services", "--colour"], ["apply"], ["get", "services", "-o", "xml"], ["delete", "services"]]) {
      const usage = await runWeft(args, env);
      expect(usage.code, `weft ${args.join(" ")}: ${usage.stderr}`).toBe(2);
      expect(usage.stdout).toBe("");
    }
  });

  it("gets a kind as a table, JSON and YAML, and one resource by name", async () => {
    const { tenant, token } = await tenantWithToken(app);
    const env = as(token);
    expect((await runWeft(["apply", "-f", file("mesh.yaml", MESH(tenant, 5432))], env)).code).toBe(0);
    const api = (await app.inject({ url: `/v1/tenants/${tenant}/identities`, headers: bearer(token) })).json().items;

    const t = await runWeft(["get", "identities", "--tenant", tenant], env);
    expect(t.code, t.stderr).toBe(0);
    const lines = t.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+SPIFFE ID\s+SECURITY ID\s+NODE SELECTOR\s+AGE$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 3))).toEqual(api.map((i: { name: string; spiffeId: string; securityIdentity: number }) => [i.name, i.spiffeId, String(i.securityIdentity)]));

    const j = await runWeft(["get", "identities", "-t", tenant, "-o", "json"], env);
    expect(JSON.parse(j.stdout)).toEqual(api);
    const y = await runWeft(["get", "identity", "-t", tenant, "-o", "yaml"], env);
    expect(parseYaml(y.stdout)).toEqual(JSON.parse(JSON.stringify(api)));
    const one = await runWeft(["get", "Service", "db", "-t", tenant, "-o", "json"], env);
    expect(JSON.parse(one.stdout)).toEqual((await app.inject({ url: `/v1/tenants/${tenant}/services/db`, headers: bearer(token) })).json());
    const row = await runWeft(["get", "services", "db", "-t", tenant], env);
    expect(row.stdout).toMatch(/\ndb\s+\S+\s+5432\/tcp->5432\s+selector identity=db\s+random\s+\d+s\n$/);

    // get -o manifest, then apply: a round trip that changes nothing (the allocated VIP stays the API's).
    const manifest = await runWeft(["get", "services", "-t", tenant, "-o", "manifest"], env);
    expect(manifest.code, manifest.stderr).toBe(0);
    expect(parseYaml(manifest.stdout)).toEqual({
      kind: "Service",
      metadata: { name: "db", tenant },
      spec: { ports: [{ port: 5432, protocol: "tcp", targetPort: 5432 }], backends: { selector: { identity: "db" } }, loadBalancing: "random", topology: { preferSameZone: false } },
    });
    const all = ["identities", "policies"].map((k) => runWeft(["get", k, "-t", tenant, "-o", "manifest"], env));
    const again = file("again.yaml", [manifest.stdout, ...(await Promise.all(all)).map((r) => r.stdout)].join("---\n"));
    const reapplied = await runWeft(["apply", "-f", again], env);
    expect(reapplied.code, reapplied.stderr).toBe(0);
    expect(reapplied.stdout).toContain("4 documents: 4 unchanged\n");

    const missing = await runWeft(["get", "services", "nope", "-t", tenant], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('Not Found (404): service "nope" not found');
  });

  it("applies, gets and deletes a TrafficPolicy; a second one for the service is refused naming the field by the document", async () => {
    const { tenant, token } = await tenantWithToken(app);
    const env = as(token);
    expect((await runWeft(["apply", "-f", file("mesh.yaml", MESH(tenant, 5432))], env)).code).toBe(0);
    const limits = `
kind: TrafficPolicy
metadata: {name: db-limits, tenant: ${tenant}}
spec:
  targetRef: {kind: Service, name: db}
  connectionPool: {maxConnections: 50}
  outlierDetection: {consecutive5xx: 3, baseEjectionTime: 1m}
  rateLimit: {requestsPerSecond: 20}
`;
    const applied = await runWeft(["apply", "-f", file("limits.yaml", limits)], env);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain(`trafficPolicy/db-limits (tenant ${tenant}) created\n`);
    const stored = (await app.inject({ url: `/v1/tenants/${tenant}/trafficPolicies/db-limits`, headers: bearer(token) })).json();
    expect(stored).toMatchObject({ targetRef: { kind: "Service", name: "db" }, connectionPool: { maxConnections: 50 }, rateLimit: { requestsPerSecond: 20 } });

    const row = await runWeft(["get", "trafficPolicies", "-t", tenant], env);
    expect(row.code, row.stderr).toBe(0);
    expect(row.stdout).toMatch(/^NAME\s+SERVICE\s+LIMITS\s+AGE\ndb-limits\s+db\s+conn=50,eject=3x5xx,rate=20\/s\s+\d+s\n$/);
    // get -o manifest, then apply: a round trip that changes nothing.
    const manifest = await runWeft(["get", "TrafficPolicy", "db-limits", "-t", tenant, "-o", "manifest"], env);
    expect(manifest.code, manifest.stderr).toBe(0);
    const again = await runWeft(["apply", "-f", file("again.yaml", manifest.stdout)], env);
    expect(again.stdout).toContain("1 document: 1 unchanged\n");

    const second = await runWeft(["apply", "-f", "-"], env, { input: limits.replace("db-limits", "db-more") });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain("Conflict (409)");
    expect(second.stderr).toContain("spec.targetRef.name");
    expect((await app.inject({ url: `/v1/tenants/${tenant}/trafficPolicies/db-more`, headers: bearer(token) })).statusCode).toBe(404);

    const gone = await runWeft(["delete", "trafficPolicy", "db-limits", "-t", tenant], env);
    expect(gone.stdout).toBe(`trafficPolicy/db-limits (tenant ${tenant}) deleted\n`);
    expect((await app.inject({ url: `/v1/tenants/${tenant}/trafficPolicies/db-limits`, headers: bearer(token) })).statusCode).toBe(404);
  });

  it("pages through a list whatever its length", async () => {
    const { tenant, token } = await tenantWithToken(app);
    const names = Array.from({ length: 7 }, (_, i) => `id-${i}`);
    for (const name of names) {
      await app.inject({ method: "PUT", url: `/v1/tenants/${tenant}/identities/${name}`, headers: bearer(token), payload: { path: `/${name}` } });
    }
    const seen: string[] = [];
    for await (const item of listAll<{ name: string }>({ endpoint, token }, ROUTES.identities.list, { params: { tenant }, query: { limit: 2 } })) seen.push(item.name);
    expect(seen).toEqual(names);
  });

  it("deletes by name and from a file (in reverse order); a dry run deletes nothing", async () => {
    const { tenant, token } = await tenantWithToken(app);
    const env = as(token);
    const mesh = file("mesh.yaml", MESH(tenant, 5432));
    expect((await runWeft(["apply", "-f", mesh], env)).code).toBe(0);

    const dry = await runWeft(["delete", "-f", mesh, "--dry-run"], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout.trimEnd().split("\n")).toEqual([
      `policy/db-ingress (tenant ${tenant}) deleted (dry run)`,
      `service/db (tenant ${tenant}) deleted (dry run)`,
      `identity/db (tenant ${tenant}) deleted (dry run)`,
      `identity/web (tenant ${tenant}) deleted (dry run)`,
    ]);
    expect((await app.inject({ url: `/v1/tenants/${tenant}/policies/db-ingress`, headers: bearer(token) })).statusCode).toBe(200);

    const one = await runWeft(["delete", "policy", "db-ingress", "-t", tenant], env);
    expect(one.stdout).toBe(`policy/db-ingress (tenant ${tenant}) deleted\n`);
    expect((await app.inject({ url: `/v1/tenants/${tenant}/policies/db-ingress`, headers: bearer(token) })).statusCode).toBe(404);
    const again = await runWeft(["delete", "policy", "db-ingress", "-t", tenant], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("Not Found (404)");

    const rest = await runWeft(["delete", "-f", mesh, "--ignore-not-found"], env);
    expect(rest.code, rest.stderr).toBe(0);
    expect(rest.stdout).toContain(`policy/db-ingress (tenant ${tenant}) not found`);
    expect(rest.stdout).toContain(`identity/web (tenant ${tenant}) deleted`);
    expect((await app.inject({ url: `/v1/tenants/${tenant}/identities`, headers: bearer(token) })).json().items).toEqual([]);
  });
});

describe("tenants never see each other through the CLI", { timeout: 90_000 }, () => {
  it("answers another tenant's resources as missing, and writes nothing there", async () => {
    const a = await tenantWithToken(app);
    const b = await tenantWithToken(app);
    expect((await runWeft(["apply", "-f", file("a.yaml", MESH(a.tenant, 5432))], as(a.token))).code).toBe(0);
    const before = (await app.inject({ url: `/v1/tenants/${a.tenant}/services/db`, headers: bearer(a.token) })).json();

    const look = await runWeft(["get", "services", "-t", a.tenant], as(b.token));
    expect(look.code).toBe(1);
    expect(look.stderr).toContain("(404)");
    expect(look.stdout).toBe("");
    const write = await runWeft(["apply", "-f", file("b.yaml", MESH(a.tenant, 9999))], as(b.token));
    expect(write.code).toBe(1);
    expect(write.stderr).toContain("(404)");
    const remove = await runWeft(["delete", "service", "db", "-t", a.tenant], as(b.token));
    expect(remove.code).toBe(1);
    const out = join(dir, `stolen-${randomPart()}`);
    const mint = await runWeft(["svid", "-t", a.tenant, "--identity", "web", "--out", out], as(b.token));
    expect(mint.code).toBe(1);
    expect(mint.stderr).toContain("(404)");
    expect(existsSync(out)).toBe(false);
    expect((await app.inject({ url: `/v1/tenants/${a.tenant}/services/db`, headers: bearer(a.token) })).json()).toEqual(before);
    // A name of dots would be resolved away by the URL parser: DELETE .../services/.. is DELETE /v1/tenants/{a}.
    const dots = await runWeft(["delete", "service", "..", "-t", a.tenant], as(OPERATOR_TOKEN));
    expect(dots.code).toBe(1);
    expect(dots.stderr).toContain('".." is not a name');
    expect((await app.inject({ url: `/v1/tenants/${a.tenant}`, headers: operator })).statusCode).toBe(200);
    // A tenant's token does not list tenants or nodes: those are the operator's.
    const nodes = await runWeft(["status"], as(b.token));
    expect(nodes.code).toBe(1);
    expect(nodes.stderr).toContain("(403)");
  });
});

describe("weft status", { timeout: 90_000 }, () => {
  it("prints one line per node: reachable, converged, desired and applied, unresolved workloads", async () => {
    const good = await registeredNode(app, { zone: "z1" });
    const stuck = await registeredNode(app, { zone: "z2" });
    const desired = (await app.inject({ url: `/v1/nodes/${good.name}`, headers: operator })).json().desired as { revision: number; hash: string };
    const report = (node: { name: string; credential: string }, body: object) =>
      app.inject({ method: "PUT", url: `/v1/nodes/${node.name}/status`, headers: bearer(node.credential), payload: body });
    expect((await report(good, { appliedRevision: desired.revision, hash: desired.hash, counters: {}, errors: [] })).statusCode).toBe(200);
    const address = addressIn(stuck.name);
    const unresolved = [{ tenant: "acme", workload: "w-1", address, reason: "no veth" }];
    // The agent writes these strings: an escape sequence in them must not reach the operator's terminal.
    const errors = ["map full", "\u001b[2K\u001b[1Afaked"];
    expect((await report(stuck, { appliedRevision: 0, hash: "old", counters: {}, errors, unresolved })).statusCode).toBe(200);

    const r = await runWeft(["status"], as(OPERATOR_TOKEN));
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^NODE\s+ZONE\s+REACHABLE\s+CONVERGED\s+DESIRED\s+APPLIED\s+UNRESOLVED\s+ERRORS$/);
    const short = `${desired.revision}/${desired.hash.slice(0, 8)}`;
    expect(lines.find((l) => l.startsWith(good.name))).toMatch(new RegExp(`^${good.name}\\s+z1\\s+yes\\s+yes\\s+${short}\\s+${short}\\s+-\\s+-$`));
    expect(lines.find((l) => l.startsWith(stuck.name))).toMatch(new RegExp(`^${stuck.name}\\s+z2\\s+yes\\s+no\\s+\\S+\\s+0/old\\s+acme/w-1: no veth\\s+map full; \\\\x1b\\[2K\\\\x1b\\[1Afaked$`));
    expect(r.stdout).not.toContain("\u001b");
    const json = await runWeft(["status", "-o", "json"], as(OPERATOR_TOKEN));
    expect(JSON.parse(json.stdout).find((n: { name: string }) => n.name === stuck.name)).toMatchObject({ converged: false, unresolved, errors });
  });
});

describe("weft svid", { timeout: 90_000 }, () => {
  it("writes a key (0600), a chain and the bundle that openssl verifies, for the identity's SPIFFE ID", async () => {
    const { tenant, token } = await tenantWithToken(app, ["write"]);
    await app.inject({ method: "PUT", url: `/v1/tenants/${tenant}/identities/web`, headers: bearer(token), payload: { path: "/ns/prod/sa/web" } });
    const out = join(dir, `svid-${randomPart()}`);
    const r = await runWeft(["svid", "--tenant", tenant, "--identity", "web", "--out", out], as(token));
    expect(r.code, r.stderr).toBe(0);
    const spiffeId = `spiffe://${tenant}.test.weft/ns/prod/sa/web`;
    expect(r.stdout).toContain(spiffeId);
    expect(mode(out)).toBe(0o700);
    expect(mode(join(out, "svid_key.pem"))).toBe(0o600);
    const verified = execFileSync("openssl", ["verify", "-x509_strict", "-CAfile", join(out, "svid_bundle.pem"), join(out, "svid.pem")], { encoding: "utf8" });
    expect(verified.trim()).toBe(`${join(out, "svid.pem")}: OK`);
    const san = execFileSync("openssl", ["x509", "-in", join(out, "svid.pem"), "-noout", "-ext", "subjectAltName"], { encoding: "utf8" });
    expect(san).toContain(`URI:${spiffeId}`);
    // The key is the certificate's.
    const pub = (args: string[]) => execFileSync("openssl", args, { encoding: "utf8" });
    expect(pub(["pkey", "-in", join(out, "svid_key.pem"), "-pubout"])).toBe(pub(["x509", "-in", join(out, "svid.pem"), "-noout", "-pubkey"]));

    const missing = await runWeft(["svid", "--tenant", tenant, "--identity", "nope", "--out", join(dir, "none")], as(token));
    expect(missing.code).toBe(1);
    expect(existsSync(join(dir, "none"))).toBe(false);
    const reader = await tenantWithToken(app, ["read"], uniqueName("r"));
    const refused = await runWeft(["svid", "--tenant", reader.tenant, "--identity", "web"], as(reader.token));
    expect(refused.code).toBe(1);
  });
});

describe("help", { timeout: 90_000 }, () => {
  it.each(["login", "get", "apply", "delete", "status", "svid", "flows"])("weft %s --help prints its usage and exits 0", async (command) => {
    const r = await runWeft([command, "--help"], home());
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: weft ${command}`));
  });
});

// SPDX-License-Identifier: Apache-2.0
/**
 * deploy/ checked by outside validators, since no cluster and no container
 * registry are reachable here:
 * - the Dockerfile by dockerfile-utils (the Docker language server's
 *   validator: instructions, flags, arguments) and dockerfilelint (practices:
 *   apt-get, sudo, ports, tags), with FROM's build argument expanded to its
 *   default as a builder would;
 * - the Kubernetes manifests by kubernetes-models' validators (generated from
 *   the Kubernetes OpenAPI schemas: types, required fields, enums, formats),
 *   and by the TypeScript compiler against the same package's declarations
 *   for fields Kubernetes does not know (the schemas let them through; the
 *   API server would drop or refuse them);
 * - the systemd units by `systemd-analyze verify` and `systemd-analyze
 *   security --offline` (an exposure threshold per unit).
 * And the three against the code: every variable they set is one the API or
 * the agent reads, the agent's command line they give parses, and the
 * agent's capabilities are the same list in all three.
 * The image build itself is test/deploy/image-build.test.ts.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DockerfileParser } from "dockerfile-ast";
import { validate as validateDockerfile } from "dockerfile-utils";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { ENVIRONMENT, parseArgs } from "../../nodeagent/src/agent/config.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const DEPLOY = join(REPO, "deploy");
const read = (path: string) => readFileSync(join(DEPLOY, path), "utf8");

/** The capabilities the agent needs, by their Linux names. */
const AGENT_CAPABILITIES = ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"];

// dockerfilelint is CommonJS with no types: its one entry point, run(configDir, text).
const dockerfilelint = createRequire(import.meta.url)("dockerfilelint") as { run(configDir: string, text: string): { line: number; title: string; description: string }[] };

/** The Dockerfile with each `${ARG}` replaced by the ARG's default, as a build without --build-arg sees it. */
function expandArgs(text: string): string {
  const defaults = new Map([...text.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  return text.replace(/\$\{(\w+)\}/g, (whole, name: string) => defaults.get(name) ?? whole);
}

/** Both linters' findings, as "line: message". */
function lintDockerfile(text: string): string[] {
  const syntax = validateDockerfile(text).map((d) => `${d.range.start.line + 1}: ${d.message}`);
  const practice = dockerfilelint.run(DEPLOY, expandArgs(text)).map((i) => `${i.line}: ${i.title}: ${i.description}`);
  return [...syntax, ...practice];
}

describe("deploy/Dockerfile", () => {
  const text = read("Dockerfile");
  const dockerfile = DockerfileParser.parse(text);
  const stages = () => {
    const out = new Map<string, ReturnType<typeof dockerfile.getInstructions>>();
    let current: string | null = null;
    for (const i of dockerfile.getInstructions()) {
      if (i.getKeyword() === "FROM") current = i.getArgumentsContent()!.split(/\s+AS\s+/i)[1] ?? null;
      if (current) out.set(current, [...(out.get(current) ?? []), i]);
    }
    return out;
  };

  it("passes dockerfile-utils and dockerfilelint with no finding", () => {
    expect(lintDockerfile(text)).toEqual([]);
  });

  it("the linters do find faults (a broken file is not passed)", () => {
    const broken = text
      .replace("USER 1000:1000", "USERR 1000:1000")
      .replace("apt-get install -y --no-install-recommends", "apt-get install")
      .replace("EXPOSE 8080", "EXPOSE 80800")
      .replace("COPY package.json package-lock.json ./", "COPY --chwon=1 package.json package-lock.json ./");
    const found = lintDockerfile(broken).join("\n");
    expect(found).toMatch(/Unknown instruction: USERR/);
    expect(found).toMatch(/Unknown flag: chwon/);
    expect(found).toMatch(/-y/);
    expect(found).toMatch(/--no-install-recommends/);
    expect(found).toMatch(/Invalid Port Exposed/);
  });

  it("builds three stages; the API's runs as a numeric non-root user, the agent's runs bin/weft-agent.mjs", () => {
    const s = stages();
    expect([...s.keys()]).toEqual(["deps", "api", "agent"]);
    const last = (stage: string, keyword: string) => s.get(stage)!.filter((i) => i.getKeyword() === keyword).at(-1)?.getArgumentsContent();
    expect(last("api", "USER")).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    expect(last("api", "CMD")).toBe(`["node", "--import", "tsx", "api/src/server.ts"]`);
    expect(last("agent", "ENTRYPOINT")).toBe(`["node", "bin/weft-agent.mjs"]`);
    // Every path the stages copy from the build context exists in the repository.
    for (const i of dockerfile.getCOPYs().filter((x) => x.getFromFlag() === null)) {
      const sources = i.getArguments().filter((a) => !a.getValue().startsWith("--")).slice(0, -1).map((a) => a.getValue());
      for (const src of sources) expect(existsSync(join(REPO, src)), `COPY ${src}`).toBe(true);
    }
    // The committed BPF objects, not a toolchain: the image needs no clang.
    expect(text).toContain("COPY bpf/dist ./bpf/dist");
    expect(text).not.toMatch(/clang|npm run build:abi/);
  });

  it("labels the agent image with the capabilities the DaemonSet and the unit grant", () => {
    const label = /io\.weft\.capabilities="([^"]+)"/.exec(text)?.[1]?.split(" ");
    expect(label).toEqual(AGENT_CAPABILITIES);
    for (const cap of AGENT_CAPABILITIES) expect(text).toContain(`#   ${cap}`);
  });
});

/** Every document of every manifest, as parsed YAML. */
function manifests(): { file: string; doc: Record<string, unknown> & { kind: string; apiVersion: string } }[] {
  const out: ReturnType<typeof manifests> = [];
  for (const file of ["namespace.yaml", "api.yaml", "agent-daemonset.yaml"]) {
    for (const d of parseAllDocuments(read(`kubernetes/${file}`))) {
      expect(d.errors, file).toEqual([]);
      out.push({ file, doc: d.toJS() });
    }
  }
  return out;
}

/** kubernetes-models' class of a kind: its validate() checks the object against the Kubernetes schema. */
const MODELS: Record<string, string> = {
  Namespace: "kubernetes-models/v1/Namespace",
  ServiceAccount: "kubernetes-models/v1/ServiceAccount",
  Service: "kubernetes-models/v1/Service",
  Deployment: "kubernetes-models/apps/v1/Deployment",
  DaemonSet: "kubernetes-models/apps/v1/DaemonSet",
};
const INTERFACES: Record<string, string> = { Namespace: "INamespace", ServiceAccount: "IServiceAccount", Service: "IService", Deployment: "IDeployment", DaemonSet: "IDaemonSet" };

async function schemaErrors(doc: { kind: string }): Promise<string | null> {
  const model = (await import(MODELS[doc.kind]!)) as Record<string, new (data: unknown) => { validate(): void }>;
  try {
    new model[doc.kind]!(doc).validate();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** tsc over `const x: IKind = <the document>` for each: excess property errors name unknown fields. */
function unknownFields(docs: { kind: string }[]): string[] {
  // Inside the repository, so that kubernetes-models resolves from its node_modules.
  const dir = mkdtempSync(join(REPO, ".weft", "manifest-types-"));
  try {
    const lines = docs.map((d, i) => `import type { ${INTERFACES[d.kind]} as T${i} } from "${MODELS[d.kind]}";\nexport const doc${i}: T${i} = ${JSON.stringify(d, null, 2)};`);
    writeFileSync(join(dir, "manifests.ts"), `${lines.join("\n")}\n`);
    const r = spawnSync(
      join(REPO, "node_modules/.bin/tsc"),
      ["--ignoreConfig", "--noEmit", "--strict", "--skipLibCheck", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext", "--types", "", join(dir, "manifests.ts")],
      { encoding: "utf8", cwd: dir, timeout: 120_000 },
    );
    return r.status === 0 ? [] : `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.includes("error TS"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("deploy/kubernetes", () => {
  mkdirSync(join(REPO, ".weft"), { recursive: true });
  const all = manifests();
  const find = <T>(kind: string) => all.find((m) => m.doc.kind === kind)!.doc as T;
  type Container = {
    args?: string[];
    env?: { name: string; value?: string; valueFrom?: unknown }[];
    securityContext: { capabilities: { add?: string[]; drop: string[] }; runAsUser?: number; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; privileged?: boolean };
    livenessProbe: { httpGet: { host?: string; path: string; port: number | string } };
    readinessProbe: { httpGet: { host?: string; path: string; port: number | string } };
    volumeMounts: { name: string; mountPath: string }[];
  };
  type PodSpec = { hostNetwork?: boolean; hostPID?: boolean; containers: Container[]; volumes: { name: string; hostPath?: { path: string }; secret?: { secretName: string } }[]; securityContext?: { runAsNonRoot?: boolean } };
  const daemonSet = find<{ spec: { template: { spec: PodSpec } } }>("DaemonSet").spec.template.spec;
  const deployment = find<{ spec: { template: { spec: PodSpec } } }>("Deployment").spec.template.spec;

  it.each(all.map((m) => [`${m.file} ${m.doc.kind} ${(m.doc.metadata as { name: string }).name}`, m.doc] as const))("%s passes the Kubernetes schema", async (_name, doc) => {
    expect(await schemaErrors(doc)).toBeNull();
  });

  it("the schema check refuses a wrong type and a missing field", async () => {
    const ds = structuredClone(find<Record<string, any>>("DaemonSet"));
    ds.spec.template.spec.hostNetwork = "yes";
    expect(await schemaErrors(ds as { kind: string })).toMatch(/hostNetwork must be boolean/);
    delete ds.spec.selector;
    expect(await schemaErrors(ds as { kind: string })).toMatch(/selector/);
  });

  it("has no field Kubernetes does not know (TypeScript against kubernetes-models' types); a misspelt one is caught", { timeout: 180_000 }, () => {
    const docs = all.map((m) => m.doc);
    // tsc names the first unknown field of each document: one misspelling per copy.
    const pod = structuredClone(find<Record<string, any>>("DaemonSet"));
    pod.spec.template.spec.hostNetwrok = true;
    const container = structuredClone(find<Record<string, any>>("DaemonSet"));
    container.spec.template.spec.containers[0].securityContext.capabilites = { add: ["BPF"] };
    const errors = unknownFields([...docs, pod as { kind: string }, container as { kind: string }]);
    // Only the misspelt copies have errors.
    expect(errors.filter((e) => !e.includes("hostNetwrok") && !e.includes("capabilites"))).toEqual([]);
    expect(errors.join("\n")).toMatch(/hostNetwrok/);
    expect(errors.join("\n")).toMatch(/capabilites/);
  });

  it("the agent: host network and PIDs, the capabilities and no more, the join token from a Secret through --join-token-file", () => {
    expect(daemonSet).toMatchObject({ hostNetwork: true, hostPID: true });
    const agent = daemonSet.containers[0]!;
    expect(agent.securityContext).toMatchObject({ runAsUser: 0, privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    expect(agent.securityContext.capabilities.add!.map((c) => `CAP_${c}`)).toEqual(AGENT_CAPABILITIES);
    const secretVolume = daemonSet.volumes.find((v) => v.secret)!;
    const mount = agent.volumeMounts.find((m) => m.name === secretVolume.name)!;
    expect(agent.args).toEqual(["--join-token-file", `${mount.mountPath}/$(WEFT_NODE_NAME)`]);
    expect(daemonSet.volumes.filter((v) => v.hostPath).map((v) => v.hostPath!.path)).toEqual(["/sys/fs/bpf", "/sys/fs/cgroup", "/var/lib/weft", "/run/weft"]);
  });

  it("the agent's environment and arguments are ones it reads and parses; its probes are its own /healthz and /readyz", () => {
    const agent = daemonSet.containers[0]!;
    for (const e of agent.env!) expect(ENVIRONMENT, e.name).toContain(e.name);
    // As the kubelet gives them: the downward API's node name, then $(VAR) expanded in the arguments.
    const env: Record<string, string> = Object.fromEntries(agent.env!.map((e) => [e.name, e.value ?? "node-1"]));
    const args = agent.args!.map((a) => a.replace(/\$\((\w+)\)/g, (_m, v: string) => env[v]!));
    const cfg = parseArgs(args, env);
    expect(cfg).toMatchObject({ command: "run", name: "node-1", joinTokenFile: "/etc/weft/join-tokens/node-1", cgroup: "/sys/fs/cgroup", pinDir: "/sys/fs/bpf/weft", stateDir: "/var/lib/weft" });
    expect(agent.volumeMounts.map((m) => m.mountPath)).toEqual(expect.arrayContaining([cfg.pinDir.replace(/\/weft$/, ""), cfg.cgroup, cfg.stateDir, "/run/weft"]));
    // The metrics port listens on 127.0.0.1 only: with hostNetwork the kubelet reaches it there.
    for (const [probe, path] of [[agent.livenessProbe, "/healthz"], [agent.readinessProbe, "/readyz"]] as const) {
      expect(probe.httpGet).toEqual({ host: "127.0.0.1", path, port: cfg.metricsPort });
    }
  });

  it("the API: non-root, read-only root, no capabilities; the variables it is given are ones it reads", () => {
    expect(deployment.securityContext).toMatchObject({ runAsNonRoot: true });
    const api = deployment.containers[0]!;
    expect(api.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    expect(api.securityContext.capabilities.add).toBeUndefined();
    const configSource = readFileSync(join(REPO, "api/src/config.ts"), "utf8");
    for (const e of api.env!) expect(configSource, e.name).toMatch(new RegExp(`\\b${e.name}\\b`));
    // tsx's cache and the data directory are writable volumes over the read-only root.
    expect(api.volumeMounts.map((m) => m.mountPath).sort()).toEqual(["/tmp", "/var/lib/weft-api"]);
    expect(api.livenessProbe.httpGet.path).toBe("/healthz");
    expect(api.readinessProbe.httpGet.path).toBe("/readyz");
  });
});

const systemdAnalyze = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" }).status === 0;

describe.skipIf(!systemdAnalyze)("deploy/systemd (systemd-analyze)", () => {
  const tmp = mkdtempSync(join(REPO, ".weft", "units-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  /** systemd-analyze verify's complaints about a unit file (it exits 0 on many of them: its output is the verdict). */
  const verify = (path: string) => {
    const r = spawnSync("systemd-analyze", ["verify", path], { encoding: "utf8", timeout: 60_000 });
    return `${r.stdout}${r.stderr}`.trim();
  };
  const units = ["weft-api.service", "weft-agent.service"];

  it.each(units)("%s passes systemd-analyze verify with nothing to say", (unit) => {
    expect(verify(join(DEPLOY, "systemd", unit))).toBe("");
  });

  it("systemd-analyze verify does complain about a misspelt option", () => {
    const bad = join(tmp, "weft-api.service");
    writeFileSync(bad, read("systemd/weft-api.service").replace("ProtectHome=yes", "ProtectHome=yse\nProtectHomee=yes"));
    const said = verify(bad);
    expect(said).toMatch(/Failed to parse protect home value/);
    expect(said).toMatch(/Unknown key 'ProtectHomee'/);
  });

  it.each([
    ["weft-api.service", 2.0],
    ["weft-agent.service", 4.0],
  ] as const)("%s keeps systemd's exposure level at or below %s", (unit, threshold) => {
    const r = spawnSync("systemd-analyze", ["security", "--offline=yes", `--threshold=${threshold * 10}`, join(DEPLOY, "systemd", unit)], { encoding: "utf8", timeout: 60_000 });
    const level = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout)?.[1]);
    expect(level, r.stdout.slice(-400)).toBeLessThanOrEqual(threshold);
    expect(r.status).toBe(0);
  });

  it("the agent's unit grants the capabilities and no more, and gives the agent variables it reads", () => {
    const unit = read("systemd/weft-agent.service");
    const line = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(unit)?.[1]?.split(" ");
    expect(line("CapabilityBoundingSet")).toEqual(AGENT_CAPABILITIES);
    expect(line("AmbientCapabilities")).toEqual(AGENT_CAPABILITIES);
    const env = Object.fromEntries([...unit.matchAll(/^Environment=(\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
    for (const name of Object.keys(env).filter((n) => n !== "NODE_ENV")) expect(ENVIRONMENT, name).toContain(name);
    // With the two settings agent.env adds, the command line parses.
    expect(parseArgs([], { ...env, WEFT_API: "http://10.0.0.1:8080", WEFT_NODE_NAME: "node-1" })).toMatchObject({ joinTokenFile: "/etc/weft/join-token", stateDir: "/var/lib/weft" });
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node bin\/weft-agent\.mjs$/m);
  });

  it("the API's unit has no capabilities and a user of its own", () => {
    const unit = read("systemd/weft-api.service");
    expect(unit).toMatch(/^CapabilityBoundingSet=$/m);
    expect(unit).toMatch(/^DynamicUser=yes$/m);
    for (const [, name] of unit.matchAll(/^Environment=(\w+)=/gm)) if (name !== "NODE_ENV") expect(readFileSync(join(REPO, "api/src/config.ts"), "utf8")).toContain(name!);
  });
});

it("every file under deploy/ is checked here or in image-build.test.ts", () => {
  const files = execFileSync("git", ["ls-files", "deploy"], { cwd: REPO, encoding: "utf8" }).trim().split("\n").filter(Boolean);
  const untracked = execFileSync("git", ["ls-files", "--others", "--exclude-standard", "deploy"], { cwd: REPO, encoding: "utf8" }).trim().split("\n").filter(Boolean);
  expect([...new Set([...files, ...untracked])].sort()).toEqual(
    ["deploy/Dockerfile", "deploy/kubernetes/agent-daemonset.yaml", "deploy/kubernetes/api.yaml", "deploy/kubernetes/namespace.yaml", "deploy/systemd/weft-agent.service", "deploy/systemd/weft-api.service"].sort(),
  );
});

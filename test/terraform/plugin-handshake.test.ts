// go-plugin's side of the wire: the refusal without Terraform's magic
// cookie, the handshake line, mutual TLS on the unix socket (Terraform's
// client certificate and no other), go-plugin's own services, and the real
// executable serving Weft's provider.
import { type Client, type ServiceError, credentials, status } from "@grpc/grpc-js";
import { type ChildProcess, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selfSignedCertificate, type SelfSignedCert } from "../../terraform/src/plugin/certificate.ts";
import { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE } from "../../terraform/src/plugin/handshake.ts";
import { loadProtocol } from "../../terraform/src/plugin/protocol.ts";
import { type RunningPlugin, serve } from "../../terraform/src/plugin/serve.ts";
import { testProvider } from "./plugin-fixture.ts";

const REPO = join(import.meta.dirname, "../..");
const BINARY = join(REPO, "terraform/bin/terraform-provider-weft");
const HANDSHAKE = /^1\|6\|unix\|(\/[^|]+)\|grpc\|([A-Za-z0-9+/]+)$/;

/** Terraform's side of AutoMTLS: its own throwaway certificate (go-plugin makes it the same way). */
const terraformCert = selfSignedCertificate("HashiCorp");

function run(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(BINARY, [], { env, cwd: "/", stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const baseEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("TF_") || k.startsWith("PLUGIN_")) delete env[k];
  return env;
};

function serverCertPem(line: string): string {
  const der = Buffer.from(HANDSHAKE.exec(line)![2]!, "base64");
  return new X509Certificate(der).toString();
}

function client(ctor: ReturnType<typeof loadProtocol>["provider"], socket: string, serverPem: string, clientCert: SelfSignedCert | null): Client {
  const creds = clientCert
    ? credentials.createSsl(Buffer.from(serverPem), Buffer.from(clientCert.keyPem), Buffer.from(clientCert.certPem))
    : credentials.createSsl(Buffer.from(serverPem));
  return new ctor(`unix://${socket}`, creds, { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" });
}

function call<T = Record<string, unknown>>(c: Client, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (c as unknown as Record<string, Function>)[method]!.bind(c);
    fn(req, { deadline: Date.now() + 10_000 }, (err: ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

describe("refusing to start", () => {
  it("without Terraform's magic cookie: exit 1 and a sentence saying what the binary is", async () => {
    expect(statSync(BINARY).mode & 0o777).toBe(0o755);
    const res = await run(baseEnv());
    expect(res.code).toBe(1);
    expect(res.stdout).toBe("");
    expect(res.stderr).toContain("terraform-provider-weft is a Terraform plugin, not a program to run by hand");
    expect(res.stderr).toContain("dev_overrides");
    const wrong = await run({ ...baseEnv(), [MAGIC_COOKIE_KEY]: "nope" });
    expect(wrong.code).toBe(1);
  });

  it("without a client certificate to trust, or without protocol 6 on offer", async () => {
    const noCert = await run({ ...baseEnv(), [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE });
    expect(noCert.code).toBe(1);
    expect(noCert.stderr).toContain("PLUGIN_CLIENT_CERT is not set");
    const old = await run({ ...baseEnv(), [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE, PLUGIN_PROTOCOL_VERSIONS: "4,5", PLUGIN_CLIENT_CERT: terraformCert.certPem });
    expect(old.code).toBe(1);
    expect(old.stderr).toContain("speaks only version 6");
  });

  it("the cookie is Terraform's (internal/plugin6/serve.go)", () => {
    expect(MAGIC_COOKIE_KEY).toBe("TF_PLUGIN_MAGIC_COOKIE");
    expect(MAGIC_COOKIE_VALUE).toBe("d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2");
  });

  it("the script loads tsx's package entry, wherever terraform runs it from", () => {
    const tsx = JSON.parse(readFileSync(join(REPO, "node_modules/tsx/package.json"), "utf8")) as { exports: Record<string, string> };
    expect(readFileSync(BINARY, "utf8")).toContain(`$root/node_modules/tsx/${tsx.exports["."]!.replace(/^\.\//, "")}`);
  });
});

describe("serving over mutual TLS on a unix socket", () => {
  const protocol = loadProtocol();
  let plugin: RunningPlugin;
  let line = "";

  beforeAll(async () => {
    plugin = await serve(testProvider(), { clientCertPem: terraformCert.certPem, socketParent: null }, { announce: (l) => (line = l), log: () => {} });
  });
  afterAll(async () => {
    await plugin.shutdown();
  });

  it("announces 1|6|unix|SOCKET|grpc|CERT, the certificate DER in unpadded base64, for localhost", () => {
    expect(line).toMatch(HANDSHAKE);
    const [, socket, cert] = HANDSHAKE.exec(line)!;
    expect(socket).toBe(plugin.socketPath);
    expect(statSync(socket!).isSocket()).toBe(true);
    expect(statSync(dirname(socket!)).mode & 0o077).toBe(0); // only the user reaches the socket
    expect(cert!.endsWith("=")).toBe(false);
    const x = new X509Certificate(Buffer.from(cert!, "base64"));
    expect(x.raw.equals(plugin.serverCertDer)).toBe(true);
    expect(x.checkHost("localhost")).toBe("localhost");
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.keyUsage).toEqual(expect.arrayContaining(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])); // serverAuth, clientAuth
  });

  it("answers GetProviderSchema to a client presenting Terraform's certificate", async () => {
    const c = client(protocol.provider, plugin.socketPath, serverCertPem(line), terraformCert);
    try {
      const res = await call<{ resource_schemas: Record<string, { version: number }>; server_capabilities: { plan_destroy: boolean } }>(c, "GetProviderSchema", {});
      expect(Object.keys(res.resource_schemas)).toEqual(["weft_thing"]);
      expect(res.resource_schemas.weft_thing!.version).toBe(1);
      expect(res.server_capabilities.plan_destroy).toBe(true);
    } finally {
      c.close();
    }
  });

  it("refuses a client with another certificate, and one with none", async () => {
    for (const cert of [selfSignedCertificate("HashiCorp"), null]) {
      const c = client(protocol.provider, plugin.socketPath, serverCertPem(line), cert);
      try {
        const err = await call(c, "GetProviderSchema", {}).then(
          () => null,
          (e: ServiceError) => e,
        );
        expect(err, `client with ${cert ? "another" : "no"} certificate`).not.toBeNull();
        expect(err!.code).toBe(status.UNAVAILABLE);
      } finally {
        c.close();
      }
    }
  });

  it("offers go-plugin's health check, stdio and broker streams", async () => {
    const pem = serverCertPem(line);
    const health = client(protocol.health, plugin.socketPath, pem, terraformCert);
    const stdio = client(protocol.stdio, plugin.socketPath, pem, terraformCert);
    const broker = client(protocol.broker, plugin.socketPath, pem, terraformCert);
    try {
      expect(await call(health, "Check", { service: "plugin" })).toEqual({ status: "SERVING" });
      await expect(call(health, "Check", { service: "other" })).rejects.toMatchObject({ code: status.NOT_FOUND });
      // Both streams open and stay open (go-plugin's client holds them for the plugin's lifetime).
      for (const [c, open] of [
        [stdio, () => (stdio as unknown as { StreamStdio(r: object): NodeJS.EventEmitter & { cancel(): void } }).StreamStdio({})],
        [broker, () => (broker as unknown as { StartStream(): NodeJS.EventEmitter & { cancel(): void } }).StartStream()],
      ] as const) {
        const stream = open();
        const outcome = await new Promise<string>((resolve) => {
          stream.on("error", (e: ServiceError) => resolve(`error ${e.code}`));
          stream.on("end", () => resolve("ended"));
          setTimeout(() => resolve("open"), 300);
        });
        expect(outcome, String(c.getChannel().getTarget())).toBe("open");
        stream.on("error", () => {});
        stream.cancel();
      }
    } finally {
      for (const c of [health, stdio, broker]) c.close();
    }
  });
});

describe("the executable, serving Weft's provider", () => {
  let child: ChildProcess | null = null;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
  });

  it("hands Terraform the socket, serves the schema over mTLS, and exits on GRPCController.Shutdown", async () => {
    const protocol = loadProtocol();
    const env = { ...baseEnv(), [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE, PLUGIN_PROTOCOL_VERSIONS: "5,6", PLUGIN_CLIENT_CERT: terraformCert.certPem };
    const proc = spawn(BINARY, [], { env, cwd: "/", stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    let stderr = "";
    proc.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on("close", (code) => resolve(code)));
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: proc.stdout! }).once("line", resolve);
      void exited.then((code) => reject(new Error(`exited with ${code} before the handshake: ${stderr}`)));
    });
    expect(first).toMatch(HANDSHAKE);
    const socket = HANDSHAKE.exec(first)![1]!;

    const provider = client(protocol.provider, socket, serverCertPem(first), terraformCert);
    const controller = client(protocol.controller, socket, serverCertPem(first), terraformCert);
    try {
      const schema = await call<{ diagnostics: unknown[]; resource_schemas: object; data_source_schemas: object }>(provider, "GetProviderSchema", {});
      expect(schema.diagnostics).toEqual([]);
      expect(Object.keys(schema.resource_schemas)).toEqual(
        expect.arrayContaining(["weft_tenant", "weft_identity", "weft_workload", "weft_service", "weft_policy", "weft_join_token"]),
      );
      expect(Object.keys(schema.data_source_schemas)).toEqual(expect.arrayContaining(["weft_bundle", "weft_node"]));
      await call(controller, "Shutdown", {});
    } finally {
      provider.close();
      controller.close();
    }
    expect(await exited).toBe(0);
    expect(existsSync(dirname(socket))).toBe(false);
  });
});

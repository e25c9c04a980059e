// SPDX-License-Identifier: Apache-2.0
/**
 * deploy/Dockerfile built with podman (Debian's package), both targets, and
 * each image's own files run: the agent's entry point answers --help, the
 * API serves /readyz and a route as uid 1000 with its data in the image's
 * volume directory.
 *
 * What this machine allows, and so what the test does:
 * - No container registry: FROM is a stand-in for node:24-bookworm-slim made
 *   by test/deploy/base-image.sh (debootstrap + Node 24 and npm from the npm
 *   registry), or the image WEFT_TEST_NODE_IMAGE names.
 * - crun cannot run a container here (cgroups in hybrid mode, setrlimit
 *   refused): RUN steps use podman's chroot isolation, and the built images
 *   are run by chroot into a container's mounted root filesystem, in the
 *   host's namespaces, as the image's user.
 * Skipped, saying why, where podman (or debootstrap, to make the base) is
 * not installed.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { beforeAll, describe, expect, it } from "vitest";
import { HELP } from "../../nodeagent/src/agent/config.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const BASE = process.env.WEFT_TEST_NODE_IMAGE ?? "localhost/weft-test/node:24-bookworm-slim";
const TAG = { api: "localhost/weft-api:test", agent: "localhost/weft-agent:test" } as const;
const OPERATOR_TOKEN = "weft_op_image-test-token-0123456789";

const has = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
const podman = (...args: string[]) => {
  const r = spawnSync("podman", args, { encoding: "utf8", cwd: REPO, timeout: 900_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`podman ${args.join(" ")} failed (${r.status}):\n${`${r.stdout}${r.stderr}`.slice(-3000)}`);
  return r.stdout.trim();
};

const skipReason = !has("podman", "--version")
  ? "podman is not installed (apt-get install podman)"
  : !has("podman", "image", "exists", BASE) && !has("debootstrap", "--version")
    ? `no base image ${BASE} and no debootstrap to make one (apt-get install debootstrap)`
    : null;
if (skipReason) console.warn(`image build skipped: ${skipReason}`);

/** A root filesystem of a new container of `image`, writable; removed by the returned function. */
function mountedContainer(image: string): { root: string; remove(): void } {
  const id = podman("create", image);
  const root = podman("mount", id);
  return {
    root,
    remove: () => {
      spawnSync("podman", ["umount", id], { stdio: "ignore" });
      spawnSync("podman", ["rm", "-f", id], { stdio: "ignore" });
    },
  };
}

/** Runs a command in a mounted image as `user`, with only the image's own environment and `env`. */
function inImage(root: string, user: string, command: string, env: Record<string, string> = {}) {
  const vars = Object.entries({ PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/tmp", ...env }).map(([k, v]) => `${k}=${v}`);
  return ["chroot", [`--userspec=${user}`, root, "/usr/bin/env", "-i", ...vars, "/bin/sh", "-c", `cd /opt/weft && exec ${command}`]] as const;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

describe.skipIf(skipReason !== null)("deploy/Dockerfile built with podman", () => {
  beforeAll(() => {
    if (!has("podman", "image", "exists", BASE)) {
      const r = spawnSync("bash", ["test/deploy/base-image.sh", BASE], { cwd: REPO, encoding: "utf8", timeout: 900_000 });
      if (r.status !== 0) throw new Error(`failed to make the base image: ${r.stderr.slice(-2000)}`);
    }
    for (const target of ["api", "agent"] as const) {
      podman("build", "--isolation", "chroot", "--network", "host", "--build-arg", `NODE_IMAGE=${BASE}`, "-f", "deploy/Dockerfile", "--target", target, "-t", TAG[target], ".");
    }
  }, 1_800_000);

  it("the API image: a numeric non-root user, port 8080, the server as its command, no build tools or tests inside", () => {
    const [config] = JSON.parse(podman("image", "inspect", TAG.api)) as { Config: { User: string; ExposedPorts: Record<string, unknown>; Cmd: string[]; WorkingDir: string } }[];
    expect(config!.Config).toMatchObject({ User: "1000:1000", WorkingDir: "/opt/weft", Cmd: ["node", "--import", "tsx", "api/src/server.ts"] });
    expect(Object.keys(config!.Config.ExposedPorts)).toEqual(["8080/tcp"]);
    const c = mountedContainer(TAG.api);
    try {
      const [cmd, args] = inImage(c.root, "1000:1000", "ls -A /opt/weft /opt/weft/node_modules/.bin");
      const listing = spawnSync(cmd, args, { encoding: "utf8" }).stdout;
      expect(listing).toMatch(/^api$/m);
      for (const absent of ["test", "bench", ".git", "vitest", "drizzle-kit", "typescript"]) expect(listing).not.toMatch(new RegExp(`^${absent.replace(".", "\\.")}$`, "m"));
    } finally {
      c.remove();
    }
  });

  it("the API image serves /readyz and the operator's routes as uid 1000, its database in /var/lib/weft-api, and stops on SIGTERM", { timeout: 120_000 }, async () => {
    const c = mountedContainer(TAG.api);
    let server: ChildProcess | null = null;
    try {
      const port = await freePort();
      const [cmd, args] = inImage(c.root, "1000:1000", "node --import tsx api/src/server.ts", {
        NODE_ENV: "production",
        HOST: "127.0.0.1",
        PORT: String(port),
        WEFT_DATA_DIR: "/var/lib/weft-api/data",
        WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN,
        LOG_LEVEL: "warn",
      });
      server = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
      let log = "";
      server.stdout!.on("data", (d: Buffer) => (log += String(d)));
      server.stderr!.on("data", (d: Buffer) => (log += String(d)));
      const base = `http://127.0.0.1:${port}`;
      let ready: Response | null = null;
      for (let i = 0; i < 120 && !ready?.ok; i++) {
        ready = await fetch(`${base}/readyz`).catch(() => null);
        if (!ready?.ok) await new Promise((r) => setTimeout(r, 500));
      }
      expect(ready?.status, log.slice(-2000)).toBe(200);
      const tenants = await fetch(`${base}/v1/tenants`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
      expect(tenants.status).toBe(200);
      expect(await tenants.json()).toEqual({ items: [], nextCursor: null });
      const [lsCmd, lsArgs] = inImage(c.root, "0:0", "stat -c '%u %a' /var/lib/weft-api/data");
      expect(spawnSync(lsCmd, lsArgs, { encoding: "utf8" }).stdout.trim()).toMatch(/^1000 7\d\d$/);
      const exited = new Promise<number | null>((resolve) => server!.once("exit", (code) => resolve(code)));
      server.kill("SIGTERM");
      expect(await exited).toBe(0);
      server = null;
    } finally {
      if (server && server.exitCode === null) server.kill("SIGKILL");
      c.remove();
    }
  });

  it("the agent image: its entry point, the capabilities it documents, libbpf and ip inside; --help runs on the image's Node 24", () => {
    const [config] = JSON.parse(podman("image", "inspect", TAG.agent)) as { Config: { Entrypoint: string[]; Labels: Record<string, string>; User?: string } }[];
    expect(config!.Config.Entrypoint).toEqual(["node", "bin/weft-agent.mjs"]);
    expect(config!.Config.Labels["io.weft.capabilities"]).toBe("CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_ADMIN CAP_SYS_PTRACE");
    expect(config!.Config.User ?? "").toBe("");
    const c = mountedContainer(TAG.agent);
    try {
      const [cmd, args] = inImage(c.root, "0:0", "node bin/weft-agent.mjs --help");
      const help = spawnSync(cmd, args, { encoding: "utf8", timeout: 60_000 });
      expect(help.status, help.stderr).toBe(0);
      expect(help.stdout).toBe(HELP);
      const [vCmd, vArgs] = inImage(c.root, "0:0", `/bin/sh -c "node --version && ls /usr/lib/x86_64-linux-gnu/libbpf.so.1 /opt/weft/bpf/dist && ip -V"`);
      const tools = spawnSync(vCmd, vArgs, { encoding: "utf8" });
      expect(tools.status, tools.stderr).toBe(0);
      expect(tools.stdout).toMatch(/^v24\./);
      expect(tools.stdout).toContain("weft_policy.o");
      expect(tools.stdout).toMatch(/iproute2/);
    } finally {
      c.remove();
    }
  });
});

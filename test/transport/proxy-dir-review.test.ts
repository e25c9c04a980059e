// Review of the proxy hop (issue 21): the transport's directory of target
// sockets is "a directory only root enters" (README, proxy-targets.ts), and
// HAProxy hands each proxied connection, in plaintext, to the socket it
// finds there by name. transport.ts makes it with mkdirSync(dir,
// { recursive: true, mode: 0o700 }), which leaves an existing directory's
// mode as it is: a directory left by `mkdir -p` under a 022 umask (an
// operator's provisioning, an image) stays 0755, and one that is writable
// by others lets any local user put its own listener at a target's name,
// where HAProxy's next connection for that backend (the request, its
// headers, its tokens) lands. And a transport that died leaves its sockets
// there: the restarted one removes only those its new config names.
// FAILS on main at 7700781: written ahead of a fix.
import { afterEach, describe as vitestDescribe, expect, it } from "vitest";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TransportConfig } from "../../nodeagent/src/transport/control-schema.ts";
import { proxyTargetPath } from "../../nodeagent/src/transport/proxy-targets.ts";
import { skipTransport, startTransport, type RunningTransport } from "./support.ts";

const describe = vitestDescribe.skipIf(skipTransport);

const TARGET = { address: "127.0.21.9", port: 8080 };
const config: TransportConfig = { workloads: [], bundles: [], remotes: [], allow: [], proxy: { address: "127.0.31.9", targets: [`${TARGET.address}:${TARGET.port}`], allow: [] } };

let root: string | undefined;
let t: RunningTransport | undefined;
afterEach(async () => {
  await t?.stop();
  t = undefined;
  if (root) rmSync(root, { recursive: true, force: true });
  root = undefined;
});

/** A state directory as an agent's (root's, 0755), with its proxy-hops directory already there at `mode`. */
async function withExistingDir(mode: number): Promise<string> {
  root = mkdtempSync(join(tmpdir(), "weft-proxy-dir-review-"));
  chmodSync(root, 0o755);
  const dir = join(root, "proxy-hops");
  mkdirSync(dir);
  chmodSync(dir, mode);
  t = await startTransport(["--proxy-dir", dir]);
  expect(await t.configure(config)).toMatchObject({ ok: true });
  return dir;
}

describe("the proxy's target sockets' directory", () => {
  it("is root's alone even when it was there before (0755 from a 022 umask)", async () => {
    const dir = await withExistingDir(0o755);
    // On main: 0o755, and any local user lists which backends on other nodes this node's proxy reaches.
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it("gives no local user a target's name when it was there before and writable by others (0777)", async () => {
    const dir = await withExistingDir(0o777);
    const path = proxyTargetPath(dir, TARGET);
    // `nobody` takes the target's name: unlinks the transport's socket (root's, 0600: the directory's mode decides
    // who may unlink it) and listens there itself.
    const script = `
      const fs = require("node:fs"), net = require("node:net");
      try { fs.unlinkSync(${JSON.stringify(path)}); } catch (e) { console.log("unlink " + e.code); }
      const s = net.createServer((c) => c.end("impostor\\n"));
      s.on("error", (e) => { console.log("listen " + e.code); process.exit(0); });
      s.listen(${JSON.stringify(path)}, () => { console.log("listening"); setTimeout(() => process.exit(0), 3000); });`;
    const child = spawn(process.execPath, ["-e", script], { uid: 65534, gid: 65534, stdio: ["ignore", "pipe", "inherit"] });
    const said = await new Promise<string>((resolve) => {
      let out = "";
      child.stdout!.on("data", (d) => (out += d.toString()));
      child.stdout!.on("data", () => /listening|unlink|listen /.test(out) && setTimeout(() => resolve(out), 100));
      child.once("exit", () => resolve(out));
    });
    try {
      // What HAProxy reaches at the target's name must still be the transport (it says nothing first; the impostor does).
      const answer = await new Promise<string>((resolve) => {
        const s = connect({ path });
        let got = "";
        s.on("data", (d) => (got += d.toString()));
        s.on("close", () => resolve(got));
        s.on("error", () => resolve("error"));
        setTimeout(() => s.destroy(), 500);
      });
      expect({ said, answer }).toEqual({ said: expect.not.stringMatching(/listening/), answer: expect.not.stringMatching(/impostor/) });
    } finally {
      child.kill("SIGKILL");
    }
    // The mode the README promises.
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });
});

describe("the proxy's target sockets across a transport restart", () => {
  it("are not left behind for targets the restarted transport no longer has (the agent restarts a transport that died)", async () => {
    root = mkdtempSync(join(tmpdir(), "weft-proxy-dir-review-"));
    const dir = join(root, "proxy-hops");
    t = await startTransport(["--proxy-dir", dir]);
    expect(await t.configure(config)).toMatchObject({ ok: true });
    const path = proxyTargetPath(dir, TARGET);
    expect(existsSync(path)).toBe(true);
    await t.stop(); // SIGKILL: as a transport that died
    t = await startTransport(["--proxy-dir", dir]);
    expect(await t.configure({ ...config, proxy: { ...config.proxy!, targets: [] } })).toMatchObject({ ok: true });
    // On main: the dead transport's socket file stays, named as a target, with nothing listening (ECONNREFUSED).
    expect(readdirSync(dir)).toEqual([]);
  });
});

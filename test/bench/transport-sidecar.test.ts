// The sidecar baseline of bench:transport (bench/transport/tls-sidecar.ts) is
// only a fair stand-in for an Istio sidecar if it really does mutual TLS: its
// inbound must refuse a client with no certificate and one whose certificate
// another CA signed (even wearing the same SPIFFE ID), and its outbound must
// refuse a peer it cannot verify. Each refusal has its control (the same
// call with the right certificate gets through), so none of them can pass
// because the path is merely broken. In namespaces of its own: run under
// flock /tmp/weft-kernel.lock.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BenchCleanup } from "../../bench/support/cleanup.ts";
import { inNetns, makeNetns, startDaemon } from "../../bench/support/netns.ts";
import { httpBackend } from "../../bench/support/proxies.ts";
import { SIDECAR_INBOUND_PORT, SIDECAR_OUTBOUND_PORT, tlsSidecar } from "../../bench/transport/tls-sidecar.ts";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";

const unavailable =
  (process.getuid?.() !== 0 ? "not running as root (network namespaces)" : null) ??
  commandUnavailableReason("haproxy", ["-v"], "apt-get install haproxy") ??
  commandUnavailableReason("openssl", ["version"], "apt-get install openssl") ??
  commandUnavailableReason("curl", ["--version"], "apt-get install curl");
const skip = skipWithout("the TLS sidecar's boundary tests", unavailable);

const APP_PORT = 8080;
const POD = "198.18.0.10";
const PEER = "198.18.0.11";

/** A CA, and leaves it signed: `pod` (the workload's SVID) and, under a second CA, `rogue` with the same SPIFFE ID. */
function mint(dir: string): void {
  const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  writeFileSync(join(dir, "leaf.ext"), "subjectAltName=URI:spiffe://bench.test/ns/bench/sa/pod\nextendedKeyUsage=serverAuth,clientAuth\n");
  for (const [ca, leaf] of [["ca", "pod"], ["rogue-ca", "rogue"]] as const) {
    run(["req", "-x509", ...ec, "-keyout", `${ca}.key`, "-out", `${ca}.pem`, "-days", "1", "-subj", `/O=bench/CN=${ca}`]);
    run(["req", "-new", ...ec, "-keyout", `${leaf}.key`, "-out", `${leaf}.csr`, "-subj", "/O=bench"]);
    run(["x509", "-req", "-in", `${leaf}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-days", "1", "-extfile", "leaf.ext", "-out", `${leaf}.pem`]);
  }
  writeFileSync(join(dir, "pod.bundle"), execFileSync("cat", ["pod.pem", "pod.key"], { cwd: dir }));
}

/** curl inside `ns`: the HTTP status, or "failed (exit N)" when no answer came. */
function curl(ns: string, args: string[]): Promise<string> {
  const argv = [...inNetns(ns), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", ...args];
  return new Promise((resolve) =>
    execFile(argv[0]!, argv.slice(1), (err, stdout) => resolve(err ? `failed (exit ${(err as { code?: number }).code})` : stdout.trim())),
  );
}

describe.skipIf(skip)("bench:transport's TLS sidecar", () => {
  const cleanup = new BenchCleanup(`wbench-manifest-${process.pid}-txsidecar`);
  let dir = "";
  let pod = "";
  let client = "";
  const file = (n: string) => join(dir, n);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "wtest-tls-sidecar-"));
    cleanup.add(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    mint(dir);
    const svid = { haproxyPem: file("pod.bundle"), bundlePem: file("ca.pem") };
    // pod: its sidecar's outbound goes to its own inbound, which forwards to the app.
    pod = makeNetns(cleanup, "txsc-pod");
    execFileSync("ip", ["-n", pod, "addr", "add", `${POD}/32`, "dev", "lo"]);
    await httpBackend(cleanup, pod, APP_PORT, "node");
    await tlsSidecar(cleanup, { netns: pod, podAddress: POD, svid, appPort: APP_PORT, peerAddress: POD });
    // client: its sidecar's outbound goes to PEER, where an openssl s_server plays the peer's inbound.
    client = makeNetns(cleanup, "txsc-cli");
    execFileSync("ip", ["-n", client, "addr", "add", `${POD}/32`, "dev", "lo"]);
    execFileSync("ip", ["-n", client, "addr", "add", `${PEER}/32`, "dev", "lo"]);
    await tlsSidecar(cleanup, { netns: client, podAddress: POD, svid, appPort: APP_PORT, peerAddress: PEER });
  });
  afterAll(async () => {
    const errors = await cleanup.run();
    if (errors.length) throw new Error(`cleanup: ${errors.join("; ")}`);
  });

  it("carries a request pod -> its outbound -> mutual TLS -> its inbound -> the app", async () => {
    expect(await curl(pod, [`http://127.0.0.1:${SIDECAR_OUTBOUND_PORT}/`])).toBe("200");
  });

  it("inbound: refuses a client with no certificate, and one another CA signed with the same SPIFFE ID; takes the pod's", async () => {
    const url = `https://${POD}:${SIDECAR_INBOUND_PORT}/`;
    const tls = ["-k", "--tlsv1.3"];
    expect(await curl(pod, [...tls, url])).toMatch(/^failed/);
    expect(await curl(pod, [...tls, "--cert", file("rogue.pem"), "--key", file("rogue.key"), url])).toMatch(/^failed/);
    expect(await curl(pod, [...tls, "--cert", file("pod.pem"), "--key", file("pod.key"), url])).toBe("200");
  });

  it("outbound: refuses a peer whose certificate the bundle does not vouch for; takes one it does", async () => {
    for (const [leaf, expected] of [["rogue", /^failed/], ["pod", /^200$/]] as const) {
      const peer = await startDaemon(
        cleanup,
        `openssl s_server as ${leaf}`,
        [...inNetns(client), "openssl", "s_server", "-accept", `${PEER}:${SIDECAR_INBOUND_PORT}`, "-cert", file(`${leaf}.pem`), "-key", file(`${leaf}.key`), "-tls1_3", "-www", "-naccept", "1"],
        { ready: () => execFileSync("ss", ["-N", client, "-ltnH", `src ${PEER}:${SIDECAR_INBOUND_PORT}`], { encoding: "utf8" }).trim() !== "" },
      );
      expect(await curl(client, [`http://127.0.0.1:${SIDECAR_OUTBOUND_PORT}/`])).toMatch(expected);
      await peer.stop();
    }
  });
});

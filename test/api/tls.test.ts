// Issue #19 item 1: TLS on the API. The real server process, checked from
// outside: curl and openssl against the operator CA, Node's https and
// http2 clients, the agent's client (with --api-ca, with a pin, and refusing
// a server it does not trust), renewal in place, and plain HTTP refused off
// loopback.
import { spawn, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { get } from "node:https";
import { connect as http2Connect } from "node:http2";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient, ApiError } from "../../nodeagent/src/agent/client.ts";
import { apiFetch, fingerprintOf, resolveApiCa, PINNED_CA_FILE } from "../../nodeagent/src/agent/api-trust.ts";
import { OPERATOR_TOKEN } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { untilHolds } from "../support/until.ts";

const operator = { authorization: `Bearer ${OPERATOR_TOKEN}`, "content-type": "application/json" };

function run(cmd: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 30_000 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The certificate the server presents on a TLS handshake, whatever it chains to. */
function servedCertificate(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", rejectUnauthorized: false }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.end();
      resolve(new X509Certificate(raw));
    });
    socket.on("error", reject);
  });
}

/** GET over node:https trusting `ca` only (undefined: Node's roots); the status or the error's code. */
function httpsGet(url: string, ca: string | undefined): Promise<number | string> {
  return new Promise((resolve) => {
    get(url, { ...(ca ? { ca } : {}) }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** A CA that signed nothing the API serves: the "wrong CA" of every refusal below. */
function strangerCa(dir: string): string {
  const key = join(dir, "stranger.key");
  const cert = join(dir, "stranger.pem");
  const r = run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=stranger", "-days", "1"]);
  expect(r.status, r.stderr).toBe(0);
  return cert;
}

describe("HTTPS with a serving certificate Weft issues itself (WEFT_TLS=self), HTTP/2 on", () => {
  let dir: string;
  let api: ApiProcess;
  let port: number;
  let caFile: string;
  let ca: string;
  let stranger: string;
  const SANS = ["dns:localhost", "dns:weft.example", "ip:127.0.0.1", "ip:198.18.0.1"];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-tls-"));
    api = await startApiProcess({
      WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN,
      WEFT_DATA_DIR: join(dir, "data"),
      DATABASE_URL: "",
      WEFT_TLS: "self",
      WEFT_TLS_SAN: SANS.join(","),
      // Short enough to watch a renewal (at two thirds of it), long enough for the other checks between two.
      WEFT_TLS_CERT_TTL: "12",
      WEFT_HTTP2: "1",
      LOG_LEVEL: "info",
    });
    port = Number(new URL(api.base).port);
    caFile = join(dir, "operator-ca.pem");
    ca = readFileSync(caFile, "utf8");
    stranger = strangerCa(dir);
  }, 90_000);
  afterAll(async () => {
    await api?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("writes the operator CA beside the data directory and serves the same one, unauthenticated, at GET /v1/system/ca", () => {
    expect(statSync(caFile).mode & 0o777).toBe(0o644);
    const cert = new X509Certificate(ca);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toMatch(/CN=Weft operator CA [0-9a-f]{32}/);
    const r = run("curl", ["-sS", "--fail", "--cacert", caFile, `${api.base}/v1/system/ca`]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(ca);
    expect(api.output()).toContain(`operator CA (pin it in agents and Terraform) written to ${caFile}`);
  });

  it("serves HTTPS that curl accepts with --cacert, over HTTP/2 by ALPN and over HTTP/1.1", () => {
    for (const [flag, version] of [["--http2", "2"], ["--http1.1", "1.1"]] as const) {
      const r = run("curl", ["-sS", "--fail", flag, "--cacert", caFile, "-o", "/dev/null", "-w", "%{http_version}", `https://localhost:${port}/readyz`]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(version);
    }
  });

  it("is refused by curl and by Node with another CA or none (curl exit 60: the peer's certificate cannot be verified)", async () => {
    for (const args of [["--cacert", stranger], []]) {
      const r = run("curl", ["-sS", ...args, `${api.base}/readyz`]);
      expect(r.status, r.stderr).toBe(60);
    }
    expect(await httpsGet(`${api.base}/readyz`, ca)).toBe(200);
    expect(await httpsGet(`${api.base}/readyz`, readFileSync(stranger, "utf8"))).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
    expect(await httpsGet(`${api.base}/readyz`, undefined)).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
  });

  it("presents a server certificate that chains to the operator CA (openssl verify) for exactly the configured names", async () => {
    const leaf = await servedCertificate(port);
    writeFileSync(join(dir, "leaf.pem"), leaf.toString());
    for (const check of [["-verify_hostname", "weft.example"], ["-verify_hostname", "localhost"], ["-verify_ip", "198.18.0.1"], ["-verify_ip", "127.0.0.1"]]) {
      const r = run("openssl", ["verify", "-x509_strict", "-purpose", "sslserver", ...check, "-CAfile", caFile, join(dir, "leaf.pem")]);
      expect(r.status, `${check.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
    }
    const other = run("openssl", ["verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", "other.example", "-CAfile", caFile, join(dir, "leaf.pem")]);
    expect(other.status).not.toBe(0);
    expect(leaf.subjectAltName).toBe("DNS:localhost, DNS:weft.example, IP Address:127.0.0.1, IP Address:198.18.0.1");
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(new X509Certificate(ca))).toBe(true);
    const life = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
    // 12 s of life from now, plus the 10 s backdating for clocks that lag.
    expect(life).toBeLessThanOrEqual(23_000);
  });

  it("the agent's client refuses the API without the CA, saying what to do, and works with --api-ca", async () => {
    const untrusting = new ApiClient(api.base, null, apiFetch(null));
    const refused = await untrusting.node("any").then(() => null, (e: unknown) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).status).toBe(0);
    expect((refused as ApiError).message).toMatch(/the API's certificate is not trusted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT)[^)]*\); give the CA that issued it with --api-ca FILE/);
    const wrong = new ApiClient(api.base, null, apiFetch(readFileSync(stranger, "utf8")));
    expect(await wrong.node("any").then(() => "answered", (e: ApiError) => e.message)).toMatch(/not trusted/);

    const trusted = apiFetch(ca);
    const minted = await trusted(`${api.base}/v1/join-tokens`, { method: "POST", headers: operator, body: JSON.stringify({}) });
    expect(minted.status).toBe(201);
    const { token } = (await minted.json()) as { token: string };
    const client = new ApiClient(api.base, null, trusted);
    const { node, credential } = await client.register({ joinToken: token, name: "tls-node", zone: "z1" });
    client.setCredential(credential);
    expect((await client.node(node.name)).name).toBe("tls-node");

    // A long poll over HTTPS: held for its wait, then 304 (unchanged).
    const first = await client.datapath(node.name);
    expect(first.kind).toBe("full");
    const started = Date.now();
    const held = await client.datapath(node.name, { etag: (first as { etag: string }).etag, waitSeconds: 2 });
    expect(held).toEqual({ kind: "unchanged" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
  });

  it("holds a long poll over HTTP/2 too, and answers it 304 at its end", async () => {
    const session = http2Connect(api.base, { ca, servername: "localhost" });
    try {
      const credential = await (async () => {
        const trusted = apiFetch(ca);
        const minted = await trusted(`${api.base}/v1/join-tokens`, { method: "POST", headers: operator, body: JSON.stringify({}) });
        const { token } = (await minted.json()) as { token: string };
        return (await new ApiClient(api.base, null, trusted).register({ joinToken: token, name: "tls-node-h2", zone: "z1" })).credential;
      })();
      const request = (headers: Record<string, string>) =>
        new Promise<{ status: number; etag: string | undefined; body: string; alpn: string | false | undefined }>((resolve, reject) => {
          const stream = session.request({ ":path": "/v1/nodes/tls-node-h2/datapath", ":method": "GET", authorization: `Bearer ${credential}`, ...headers });
          let body = "";
          let status = 0;
          let etag: string | undefined;
          stream.on("response", (h) => {
            status = Number(h[":status"]);
            etag = h.etag as string | undefined;
          });
          stream.on("data", (c: Buffer) => (body += c.toString()));
          stream.on("end", () => resolve({ status, etag, body, alpn: session.alpnProtocol }));
          stream.on("error", reject);
        });
      const full = await request({});
      expect(full.status).toBe(200);
      expect(full.alpn).toBe("h2");
      const started = Date.now();
      // Longer than nothing but well inside the server's HTTP/2 session timeout.
      const held = await (async () => {
        const path = { ":path": "/v1/nodes/tls-node-h2/datapath?wait=3" };
        return new Promise<number>((resolve, reject) => {
          const stream = session.request({ ...path, ":method": "GET", authorization: `Bearer ${credential}`, "if-none-match": full.etag! });
          stream.on("response", (h) => resolve(Number(h[":status"])));
          stream.on("error", reject);
          stream.resume();
        });
      })();
      expect(held).toBe(304);
      expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    } finally {
      session.close();
    }
  });

  it("pins the operator CA by its SHA-256 at join (--api-ca-sha256): fetched, checked, kept; a wrong pin is refused", async () => {
    const stateDir = join(dir, "agent-state");
    const pin = fingerprintOf(new X509Certificate(ca));
    // openssl's spelling of the same fingerprint: colons, upper case.
    const opensslPin = run("openssl", ["x509", "-in", caFile, "-noout", "-fingerprint", "-sha256"]).stdout.trim().split("=")[1]!;
    expect(opensslPin.replace(/:/g, "").toLowerCase()).toBe(pin);

    const wrongPin = `${pin.slice(0, 63)}${pin.endsWith("0") ? "1" : "0"}`;
    await expect(resolveApiCa({ api: api.base, stateDir, apiCaSha256: wrongPin })).rejects.toThrow(/does not match --api-ca-sha256: its SHA-256 is [0-9a-f]{64}, expected/);
    expect(existsSync(join(stateDir, PINNED_CA_FILE))).toBe(false);

    const trust = await resolveApiCa({ api: api.base, stateDir, apiCaSha256: opensslPin });
    expect(trust.pem).toBe(new X509Certificate(ca).toString());
    expect(readFileSync(join(stateDir, PINNED_CA_FILE), "utf8")).toBe(trust.pem);
    expect((await apiFetch(trust.pem)(`${api.base}/readyz`)).status).toBe(200);
    // A later start reads the kept copy, checked against the pin again.
    expect((await resolveApiCa({ api: "https://127.0.0.1:1", stateDir, apiCaSha256: pin })).source).toBe(join(stateDir, PINNED_CA_FILE));
  });

  it("reads no more than a CA's worth from a server posing as the API under a pin, and refuses it", async () => {
    const { createServer } = await import("node:https");
    const impostor = createServer({ key: readFileSync(join(dir, "stranger.key")), cert: readFileSync(stranger) }, (_req, res) => {
      res.writeHead(200, { "content-type": "application/x-pem-file" });
      const chunk = Buffer.alloc(16 * 1024, "A");
      for (let i = 0; i < 64; i++) res.write(chunk);
      res.end();
    });
    await new Promise<void>((r) => impostor.listen(0, "127.0.0.1", r));
    try {
      const base = `https://127.0.0.1:${(impostor.address() as { port: number }).port}`;
      const pin = fingerprintOf(new X509Certificate(ca));
      await expect(resolveApiCa({ api: base, stateDir: join(dir, "impostor-state"), apiCaSha256: pin })).rejects.toThrow(/answered more than 65536 bytes/);
      expect(existsSync(join(dir, "impostor-state", PINNED_CA_FILE))).toBe(false);
    } finally {
      impostor.closeAllConnections();
      await new Promise((r) => impostor.close(r));
    }
  });

  it("renews its certificate before expiry and serves the new one without a restart", async () => {
    const before = await servedCertificate(port);
    const pid = api.child.pid;
    const after = await untilHolds("a renewed serving certificate", () => servedCertificate(port), (c) => c.serialNumber !== before.serialNumber, 20_000, 250);
    expect(api.child.exitCode).toBeNull();
    expect(api.child.pid).toBe(pid);
    expect(after.checkIssued(new X509Certificate(ca))).toBe(true);
    // Renewed while the old one was still valid (the new one's notBefore is its issue time less 10 s of backdating).
    expect(Date.parse(after.validFrom) + 10_000).toBeLessThan(Date.parse(before.validTo));
    expect(after.subjectAltName).toBe(before.subjectAltName);
    expect(await httpsGet(`${api.base}/readyz`, ca)).toBe(200);
    expect(api.output()).toMatch(/TLS: serving certificate renewed/);
  }, 30_000);
});

describe("HTTPS from operator-provided PEM files (WEFT_TLS_CERT, WEFT_TLS_KEY)", () => {
  let dir: string;
  let api: ApiProcess;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "weft-tls-files-"));
    const f = (n: string) => join(dir, n);
    const steps = [
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-subj", "/CN=test operator CA", "-days", "1"],
      ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=localhost"],
      ["x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.pem"), "-days", "1", "-extfile", f("ext.cnf")],
    ];
    writeFileSync(f("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
    for (const args of steps) {
      const r = run("openssl", args);
      expect(r.status, r.stderr).toBe(0);
    }
    api = await startApiProcess({
      WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN,
      WEFT_DATA_DIR: f("data"),
      DATABASE_URL: "",
      WEFT_TLS_CERT: f("server.pem"),
      WEFT_TLS_KEY: f("server.key"),
    });
  }, 90_000);
  afterAll(async () => {
    await api?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("serves the given certificate, HTTP/1.1 only, and has no operator CA to offer (404 problem)", () => {
    const ok = run("curl", ["-sS", "--fail", "--cacert", join(dir, "ca.pem"), "-w", " %{http_version}", `${api.base}/readyz`]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('{"status":"ready"} 1.1');
    const none = run("curl", ["-sS", "--cacert", join(dir, "ca.pem"), "-w", " %{http_code} %{content_type}", `${api.base}/v1/system/ca`]);
    expect(none.stdout).toMatch(/no operator CA.* 404 application\/problem\+json/);
    expect(existsSync(join(dir, "operator-ca.pem"))).toBe(false);
  });

  it("refuses to start on a key that does not belong to the certificate, with one line naming both variables", async () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "api/src/server.ts"], {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, PORT: "0", DATABASE_URL: "", WEFT_DATA_DIR: join(dir, "data2"), WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, WEFT_TLS_CERT: join(dir, "ca.pem"), WEFT_TLS_KEY: join(dir, "server.key") },
    });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^weft: failed to start: WEFT_TLS_CERT and WEFT_TLS_KEY do not make a TLS key pair: .*key values mismatch/)]);
  });
});

describe("plain HTTP off loopback", () => {
  const serverEnv = (extra: Record<string, string>) => ({ ...process.env, PORT: "0", DATABASE_URL: "", WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, LOG_LEVEL: "info", ...extra });

  // Which addresses count as loopback, and the other variables' rules: test/api/config.test.ts.
  it("refuses to start on a non-loopback HOST without TLS, in one clear line (exit 2), before binding anything", () => {
    for (const host of ["0.0.0.0"]) {
      const dir = mkdtempSync(join(tmpdir(), "weft-plain-"));
      try {
        const r = spawnSync(process.execPath, ["--import", "tsx", "api/src/server.ts"], { encoding: "utf8", timeout: 60_000, env: serverEnv({ HOST: host, WEFT_DATA_DIR: join(dir, "data") }) });
        expect(r.status, r.stderr).toBe(2);
        expect(r.stderr.trim().split("\n")).toEqual([
          `weft: configuration error: HOST ${host} is not a loopback address and TLS is off: set WEFT_TLS=self (or WEFT_TLS_CERT and WEFT_TLS_KEY), or WEFT_ALLOW_PLAINTEXT=1 to serve plain HTTP there`,
        ]);
        // Nothing was created: the refusal comes before the database or the KEK.
        expect(existsSync(join(dir, "data"))).toBe(false);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }, 60_000);

  it("serves plain HTTP on a non-loopback address with WEFT_ALLOW_PLAINTEXT=1, warning that tokens cross in the clear", async () => {
    // In a network namespace of its own (unshare -n, gone with the process) whose
    // loopback device carries 198.18.77.1: a non-loopback address reachable from nowhere.
    const dir = mkdtempSync(join(tmpdir(), "weft-plain-"));
    const script = `ip link set lo up && ip addr add 198.18.77.1/32 dev lo && exec "${process.execPath}" --import tsx api/src/server.ts`;
    const child = spawn("unshare", ["-n", "sh", "-c", script], {
      env: serverEnv({ HOST: "198.18.77.1", PORT: "18080", WEFT_ALLOW_PLAINTEXT: "1", WEFT_DATA_DIR: join(dir, "data") }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    try {
      await untilHolds("the warning", () => output, (o) => /serving plain HTTP/.test(o) || child.exitCode !== null, 60_000, 100);
      const lines = output.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { level: number; msg: string });
      expect(lines).toContainEqual(expect.objectContaining({ msg: expect.stringContaining("weft API on http://198.18.77.1:18080") }));
      expect(lines).toContainEqual({
        ...lines.find((l) => l.level === 40 && /plain HTTP/.test(l.msg)),
        level: 40,
        msg: "serving plain HTTP on 198.18.77.1 (WEFT_ALLOW_PLAINTEXT=1): tokens and node credentials cross the network in the clear",
      });
    } finally {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

import { spawn, type ChildProcess } from "node:child_process";
import { request as httpRequest } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BACKENDS, OPERATOR_TOKEN, skipBackend } from "../support/api.ts";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once the child's output matches, rejects if it exits first or the deadline passes. */
function waitFor(child: ChildProcess, pattern: RegExp, ms = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; output: ${seen}`)), ms);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before ${pattern}; output: ${seen}`));
    });
  });
}

describe.each(BACKENDS)("the server process on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API server process (api/src/server.ts) on ${backend === "pglite" ? "PGlite in a data directory" : "the Postgres server at DATABASE_URL"}`, () => {
    it("serves, then on SIGTERM drains and exits 0", async () => {
      const home = mkdtempSync(join(tmpdir(), "weft-server-"));
      const dataDir = join(home, "data");
      const port = await freePort();
      const child = spawn(process.execPath, ["--import", "tsx", "api/src/server.ts"], {
        env: {
          ...process.env,
          PORT: String(port),
          DATABASE_URL: backend === "postgres" ? process.env.DATABASE_URL : "",
          WEFT_DATA_DIR: dataDir,
          WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN,
          WEFT_CA_ROTATION: "off",
          LOG_LEVEL: "info",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
      child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      try {
        await waitFor(child, /weft API on http/);
        const base = `http://127.0.0.1:${port}`;
        expect((await fetch(`${base}/healthz`)).status).toBe(200);
        expect((await fetch(`${base}/readyz`)).status).toBe(200);
        const tenants = await fetch(`${base}/v1/tenants`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
        expect(tenants.status).toBe(200);
        // A request in flight when the signal lands still gets its answer. In flight means the server has it:
        // its own connection (a request on an idle keep-alive connection can race the close of idle
        // connections, which any server does on shutdown), and the signal only once the server logged it.
        const logged = waitFor(child, /"url":"\/v1\/tenants\?limit=7"/);
        const inFlight = new Promise<number>((resolve, reject) => {
          const req = httpRequest(`${base}/v1/tenants?limit=7`, { agent: false, headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } }, (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          });
          req.on("error", reject);
          req.end();
        });
        await logged;
        child.kill("SIGTERM");
        expect(await inFlight).toBe(200);
        expect(await exited, output).toBe(0);
        await expect(fetch(`${base}/healthz`)).rejects.toThrow();
      } finally {
        child.kill("SIGKILL");
        rmSync(home, { recursive: true, force: true });
      }
    });
  });
});

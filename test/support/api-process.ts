import { spawn, type ChildProcess } from "node:child_process";
import { get } from "node:https";
import { createServer } from "node:net";

/** An API replica in its own process, as production runs it: api/src/server.ts. */
export interface ApiProcess {
  base: string;
  child: ChildProcess;
  /** stdout and stderr so far, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Starts api/src/server.ts on a free port with the given environment (the
 * database: DATABASE_URL, or WEFT_DATA_DIR for embedded PGlite), and
 * resolves once /readyz answers 200. It listens on 127.0.0.1 unless `env`
 * names another HOST (an address of this machine, such as a simulated
 * cluster's fabric address). With WEFT_TLS=self or WEFT_TLS_CERT the base
 * URL is https:// (readiness is polled without checking the certificate:
 * the tests that use it check it themselves).
 */
export async function startApiProcess(env: { WEFT_OPERATOR_TOKEN: string } & NodeJS.ProcessEnv): Promise<ApiProcess> {
  const host = env.HOST ?? "127.0.0.1";
  const port = await freePort(host);
  const child = spawn(process.execPath, ["--import", "tsx", "api/src/server.ts"], {
    env: { ...process.env, PORT: String(port), HOST: host, WEFT_CA_ROTATION: "off", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  const tls = env.WEFT_TLS === "self" || Boolean(env.WEFT_TLS_CERT);
  const base = `${tls ? "https" : "http"}://${host}:${port}`;
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`API process exited with ${child.exitCode}: ${output}`);
    try {
      if ((tls ? await statusIgnoringCertificate(`${base}/readyz`) : (await fetch(`${base}/readyz`)).status) === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`API process not ready in 60 s: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { base, child, output: () => output, stop };
}

/** The status of a GET over https, whatever certificate the server presents (readiness only). */
function statusIgnoringCertificate(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, { rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on("error", reject);
  });
}

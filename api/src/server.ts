import { buildApp } from "./app.ts";
import { ConfigError, configFromEnv } from "./config.ts";
import { writeOperatorCaFile } from "./tls/ca-file.ts";
import { isLoopbackHost } from "./tls/sans.ts";

/** Time allowed for in-flight requests after SIGTERM before the process gives up on them. */
const SHUTDOWN_GRACE_MS = 10_000;

/**
 * The only time the generated operator token exists in plain text (the
 * database keeps its hash): on stderr, apart from the JSON log lines on
 * stdout, so a log shipper does not carry it off and a person sees it.
 */
function generatedTokenNotice(token: string): string {
  return [
    "",
    "weft: generated an operator token. It is shown this once only (the database keeps its hash):",
    "",
    `    ${token}`,
    "",
    "  Store it in a password manager or secret store now. Send it as `authorization: Bearer <token>`",
    "  to manage tenants, nodes and join tokens, or set WEFT_OPERATOR_TOKEN to a token of your own",
    "  before the next start (that replaces this one).",
    "",
    "",
  ].join("\n");
}

async function main(): Promise<void> {
  // Everything this process creates (the embedded database's files, the KEK
  // key file) is for its owner only: files 0600, directories 0700.
  process.umask(0o077);
  let config;
  try {
    config = configFromEnv();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`weft: configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const app = await buildApp(config);
  if (app.generatedOperatorToken) process.stderr.write(generatedTokenNotice(app.generatedOperatorToken));
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, "shutting down: draining in-flight requests");
    const force = setTimeout(() => {
      app.log.error("in-flight requests did not finish in time; exiting");
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    // close() ends only the keep-alive sockets idle at that moment; one whose
    // in-flight request finishes later would idle on until keepAliveTimeout
    // (72 s) and hold the exit past the grace period. Reap them as they idle.
    // (An HTTP/2 server has no such call: buildApp has its sessions closed instead.)
    const server = app.server as { closeIdleConnections?: () => void };
    const reaper = setInterval(() => server.closeIdleConnections?.(), 100);
    reaper.unref();
    app.close().then(
      () => process.exit(0),
      (err) => {
        app.log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  await app.listen({ port: config.port, host: config.host, backlog: config.listenBacklog });
  const scheme = config.tls ? "https" : "http";
  app.log.info(
    `weft API on ${scheme}://${config.host}:${config.port}${config.http2 ? " (HTTP/2 and HTTP/1.1)" : ""} (database: ${config.databaseUrl ? "postgres" : `embedded, ${config.dataDir}`})`,
  );
  if (!config.tls && !isLoopbackHost(config.host)) {
    app.log.warn(`serving plain HTTP on ${config.host} (WEFT_ALLOW_PLAINTEXT=1): tokens and node credentials cross the network in the clear`);
  }
  const operatorCa = app.weft.servingTls?.operatorCa;
  if (operatorCa && config.dataDir) {
    const file = writeOperatorCaFile(config.dataDir, operatorCa.certPem);
    app.log.info(`operator CA (pin it in agents and Terraform) written to ${file}; also at GET /v1/system/ca`);
  }
}

main().catch((err) => {
  console.error(`weft: failed to start: ${(err as Error).message}`);
  process.exit(1);
});

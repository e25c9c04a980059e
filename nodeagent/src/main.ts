// SPDX-License-Identifier: Apache-2.0
/**
 * Entry: `npm run agent -- --api URL --join-token T --name N --zone Z ...`
 * or `npm run agent -- cleanup --pin-dir DIR`. Exit codes: 0 stopped by a
 * signal or cleanup done, 1 failed to start, 2 bad invocation.
 */
import { jsonLog } from "./agent/agent.ts";
import { parseArgs, UsageError, type AgentConfig } from "./agent/config.ts";
import { startAgent, uninstall } from "./agent/runtime.ts";

async function main(): Promise<number> {
  let cfg: AgentConfig;
  try {
    cfg = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`agent: ${err.message}\n`);
    return 2;
  }
  if (cfg.command === "cleanup") {
    const r = uninstall(cfg);
    process.stdout.write(`${JSON.stringify({ pinDir: cfg.pinDir, ...r })}\n`);
    return 0;
  }
  // Listen before starting: a SIGTERM during start-up still ends in a clean stop.
  const signalled = new Promise<void>((resolve) => {
    for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
  });
  const agent = await startAgent(cfg);
  await signalled;
  jsonLog("info", "stopping; pinned maps and links keep the datapath running");
  await agent.stop();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    jsonLog("error", err.message);
    process.exit(1);
  },
);

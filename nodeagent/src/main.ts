// SPDX-License-Identifier: Apache-2.0
/**
 * Entry of the `weft-agent` command (bin/weft-agent.mjs, `npm run agent --`):
 * `weft-agent --api URL --name N --zone Z --join-token-file F ...`, or
 * `weft-agent cleanup --pin-dir DIR`, or `weft-agent --help`. Exit codes: 0
 * stopped by a signal, cleanup done or help shown, 1 failed to start, 2 bad
 * invocation.
 */
import { jsonLog } from "./agent/agent.ts";
import { HELP, joinTokenOnCommandLine, parseArgs, UsageError, wantsHelp, type AgentConfig } from "./agent/config.ts";
import { startAgent, uninstall } from "./agent/runtime.ts";

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (wantsHelp(argv)) {
    process.stdout.write(HELP);
    return 0;
  }
  let cfg: AgentConfig;
  try {
    cfg = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`weft-agent: ${err.message}\n`);
    return 2;
  }
  if (joinTokenOnCommandLine(argv)) {
    // Not refused (a one-time token, spent at the first start), but said: ps, shell history and npm's banner keep it.
    jsonLog("warn", "the join token was given on the command line, where ps and npm's banner show it: use --join-token-file FILE or WEFT_JOIN_TOKEN");
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

// The process around serve(): check the environment before loading
// anything heavy (a refusal is quick and says why), serve, and exit when
// Terraform shuts the plugin down. terraform/src/main.ts runs the Weft
// provider through this; tests run their own providers the same way.
import type { ProviderHandler } from "../framework.ts";
import { HandshakeError, type PluginEnvironment, checkEnvironment } from "./handshake.ts";

export async function runPlugin(load: () => Promise<ProviderHandler>): Promise<never> {
  let env: PluginEnvironment;
  try {
    env = checkEnvironment(process.env);
  } catch (e) {
    if (!(e instanceof HandshakeError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
  // Terraform forwards Ctrl-C to its whole process group and then asks the
  // provider to stop through StopProvider: like go-plugin's servers, the
  // plugin lives on until Terraform shuts it down.
  process.on("SIGINT", () => {});
  // A stray rejection in a handler must not take down a plugin that may be
  // halfway through an apply: log it where TF_LOG shows it and carry on.
  process.on("unhandledRejection", (e) => {
    process.stderr.write(`unhandled rejection: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  });
  try {
    const [{ serve }, provider] = await Promise.all([import("./serve.ts"), load()]);
    const plugin = await serve(provider, env);
    process.on("SIGTERM", () => void plugin.shutdown());
    await plugin.done;
    process.exit(0);
  } catch (e) {
    process.stderr.write(`terraform provider failed to start: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  }
}

// Serves the plugin-layer test provider (plugin-fixture.ts) the way
// terraform/src/main.ts serves Weft's: the real-terraform test points a
// terraform-provider-weft script in a temp directory at this file.
import { runPlugin } from "../../terraform/src/plugin/run.ts";
import { testProvider } from "./plugin-fixture.ts";

await runPlugin(async () => testProvider());

// terraform-provider-weft: Terraform starts this (through
// terraform/bin/terraform-provider-weft) and speaks plugin protocol 6 to it.
// The provider's modules load only after the handshake environment checks out.
import { runPlugin } from "./plugin/run.ts";

await runPlugin(async () => (await import("./weft/provider.ts")).weftProvider());

#!/usr/bin/env node
// The `weft` command. Weft runs its TypeScript through tsx with no build
// step; this file registers tsx's loader and hands over to cli/src/main.ts.
import { register } from "tsx/esm/api";

register();
const { run } = await import("../cli/src/main.ts");
await run();

#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// The `weft-agent` command: the agent's TypeScript runs as it is, through tsx's
// loader registered here, so an install needs no build step.
import { register } from "tsx/esm/api";

register();
await import(new URL("../nodeagent/src/main.ts", import.meta.url).href);

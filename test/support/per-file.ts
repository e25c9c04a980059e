/**
 * vitest setupFiles entry of the unit project: runs before each test file.
 * Its files share one module graph (isolate: false), so what test support
 * keeps per file's run is reset here.
 */
import { forgetHandedOutAddresses } from "./nodes.ts";

forgetHandedOutAddresses();

/** The compiler's public surface (pure: rows in, map entries out; never imports db/ or http/), for the REST layer and the agent. */
export type * from "./types.ts";
export { DATAPATH_MAPS } from "./types.ts";
export { compileNode, createCompiler, flatten, type Change, type Compiler } from "./compile.ts";
export { applyDelta, deltaSize, diff, keyString, PartDiffs } from "./diff.ts";
export { capacities, checkCapacity, type Capacities, type CapacityProblem } from "./capacity.ts";
export { assignIds, missingIds, type MissingIds } from "./allocate.ts";
export { backendKey, CompileError, decodeRuleId, ruleIdOf, tableIdOf } from "./ids.ts";
export { buildLbTable, LB_TABLE_DEFAULT, lbSlotEntries, type WeightedBackend } from "./lb-table.ts";
export { normalizePolicy } from "./normalize-policy.ts";
export { durationMs, L7_PROXY_RULE_ID, proxyAddressOf, serverWeights, type L7Config } from "./l7.ts";

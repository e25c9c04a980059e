// SPDX-License-Identifier: Apache-2.0
export { ApplyEngine, type ApplyOptions, type ApplyResult, type BatchCall, type DesiredEntries, type MapCounts, type MapTarget, type MapTargets, type Plan } from "./apply.ts";
export { DELETE_ORDER, isManagedMap, isSelectionKey, MANAGED_MAPS, orderPolicyPlan, UPSERT_ORDER, type ManagedMap } from "./order.ts";
export { planMap, type Encoded, type MapPlan } from "./plan.ts";

/**
 * Numbers the compiler derives from stable row ids. Each scheme is injective
 * so two owners never write the same key, and depends only on the owner's own
 * row so adding an unrelated row never renumbers anything.
 */

export class CompileError extends Error {
  override name = "CompileError";
}

/** The key of Snapshot.backendIds: one backend is one address and port. */
export const backendKey = (address: string, port: number): string => `${address}:${port}`;

export const MAX_SERVICE_ID = 2 ** 28 - 1;
export const MAX_PORTS_PER_SERVICE = 16;

/**
 * Lookup-table id of a service's frontend: 16 tables per service, one per
 * port in (protocol, port) order. Each port needs its own table because its
 * backends differ (backend ids are per address *and* target port).
 */
export function tableIdOf(serviceId: number, portIndex: number): number {
  if (!Number.isInteger(serviceId) || serviceId < 1 || serviceId > MAX_SERVICE_ID) {
    throw new CompileError(`service id ${serviceId} is out of range 1..${MAX_SERVICE_ID}`);
  }
  if (portIndex >= MAX_PORTS_PER_SERVICE) {
    throw new CompileError(`service ${serviceId} has more than ${MAX_PORTS_PER_SERVICE} ports`);
  }
  return serviceId * MAX_PORTS_PER_SERVICE + portIndex;
}

export const MAX_POLICY_ID = 2 ** 24 - 1;
export const MAX_RULES_PER_POLICY = 256;

/**
 * Rule id written in policy values, for flow logs and metrics: the policy's
 * id and the rule's position (ingress rules first, then egress).
 */
export function ruleIdOf(policyId: number, ruleIndex: number): number {
  if (!Number.isInteger(policyId) || policyId < 1 || policyId > MAX_POLICY_ID) {
    throw new CompileError(`policy id ${policyId} is out of range 1..${MAX_POLICY_ID}`);
  }
  if (ruleIndex >= MAX_RULES_PER_POLICY) {
    throw new CompileError(`policy ${policyId} has more than ${MAX_RULES_PER_POLICY} rules`);
  }
  return policyId * MAX_RULES_PER_POLICY + ruleIndex;
}

/** Inverse of ruleIdOf; ruleId 0 is the default-deny marker, no rule. */
export function decodeRuleId(ruleId: number): { policyId: number; ruleIndex: number } | null {
  if (ruleId === 0) return null;
  return { policyId: Math.floor(ruleId / MAX_RULES_PER_POLICY), ruleIndex: ruleId % MAX_RULES_PER_POLICY };
}

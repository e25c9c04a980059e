/** What both transport benches need here (root, bpf, cgroups, wrk, haproxy); exits with the reason when something is missing. */
import { clusterUnavailableReason } from "../support/cluster.ts";
import { availability, type Availability } from "../support/proxies.ts";

export function prerequisites(name: string): Availability {
  const tools = availability();
  const unavailable = clusterUnavailableReason() ?? (!tools.wrk || !tools.haproxy ? tools.missing.filter((m) => /^(wrk|haproxy)/.test(m)).join("; ") : null);
  if (unavailable !== null) {
    console.error(`${name} cannot run: ${unavailable}`);
    process.exit(1);
  }
  return tools;
}

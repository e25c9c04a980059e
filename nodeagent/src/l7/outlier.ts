// SPDX-License-Identifier: Apache-2.0
/**
 * Outlier ejection of a trafficPolicy (issue 21), decided by the agent
 * because HAProxy 2.6 cannot express it (its `observe layer7` marks a
 * server down by its own counters, with no ejection time that grows, and
 * no bound on how many are out). A pure state machine over the proxy's
 * access records and a clock; outlier-driver.ts turns its actions into
 * runtime API commands.
 *
 * Per frontend (a service port) with `outlier` settings, per backend
 * workload (address:port: the same workload is a server of several of the
 * frontend's backend sections, and is ejected from all of them):
 *
 * - an answer 500-599 counts a failure, and so does no answer: a server
 *   that refused the connection, closed without answering or outlasted its
 *   timeout is logged with the 502, 503 or 504 HAProxy answered in its
 *   place. Any other answer resets the count. What says nothing of the
 *   server counts nothing: answers the proxy made without asking one
 *   (refusals, no server), and -1, a client that left before the answer
 *   (counting it would let any caller eject a healthy backend by hanging up);
 * - consecutive5xx failures in a row eject the workload at once for
 *   baseEjectionMs x the times it has been ejected (at most
 *   MAX_EJECTION_MS, or baseEjectionMs if longer), unless that would put
 *   more than maxEjectionPercent of the frontend's workloads out (at least
 *   one may always be): then it waits, and each sweep tries again;
 * - every intervalMs a sweep brings back the workloads whose time is up,
 *   and lowers by one the ejection count of each workload that stayed in
 *   and did not fail during the interval (Envoy's multiplier decay);
 * - a new document drops the state of workloads it no longer lists, and
 *   brings back those of a frontend whose policy no longer ejects.
 */
import type { AccessRecord } from "./access-log.ts";
import type { L7Document, L7Outlier } from "./document.ts";
import { backendsOf } from "./traffic-render.ts";

/** Envoy's max_ejection_time default: however often a workload was ejected, it is tried again after this. */
export const MAX_EJECTION_MS = 300_000;

/** A server line in a backend section: what the runtime API addresses. */
export interface ServerRef {
  backend: string;
  server: string;
}

export interface OutlierAction {
  kind: "eject" | "restore";
  frontend: string;
  /** The workload, address:port. */
  host: string;
  /** Its servers in the frontend's backend sections. */
  servers: ServerRef[];
}

interface HostState {
  failures: number;
  /** Times ejected, lowered by healthy intervals. */
  ejections: number;
  ejectedUntil: number | null;
  failedThisInterval: boolean;
}

interface FrontendState {
  tenant: string;
  service: string;
  settings: L7Outlier;
  /** Workload -> its servers; the frontend's distinct backends. */
  hosts: Map<string, ServerRef[]>;
  state: Map<string, HostState>;
  lastSweep: number;
}

const hostOf = (address: string, port: number) => `${address}:${port}`;

/** How many of `n` workloads may be out at once: maxEjectionPercent of them, rounded down, and at least one. */
export const maxEjected = (n: number, percent: number) => Math.max(1, Math.floor((n * percent) / 100));

export class OutlierDetector {
  private frontends = new Map<string, FrontendState>();

  constructor(private readonly now: () => number) {}

  /** Takes a new document: actions bring back what its frontends no longer eject. */
  follow(doc: L7Document): OutlierAction[] {
    const actions: OutlierAction[] = [];
    const backends = new Map(doc.backends.map((b) => [b.name, b]));
    const next = new Map<string, FrontendState>();
    for (const f of doc.frontends) {
      const hosts = new Map<string, ServerRef[]>();
      for (const name of backendsOf(f)) {
        for (const s of backends.get(name)?.servers ?? []) {
          const host = hostOf(s.address, s.port);
          hosts.set(host, [...(hosts.get(host) ?? []), { backend: name, server: s.name }]);
        }
      }
      const before = this.frontends.get(f.name);
      const settings = f.traffic?.outlier;
      if (!settings) {
        // Still listed, still out: bring them back now the policy no longer ejects.
        for (const [host, st] of before?.state ?? []) {
          const servers = hosts.get(host);
          if (st.ejectedUntil !== null && servers) actions.push({ kind: "restore", frontend: f.name, host, servers });
        }
        continue;
      }
      const state = new Map([...(before?.state ?? [])].filter(([host]) => hosts.has(host)));
      next.set(f.name, { tenant: f.tenant, service: f.service, settings, hosts, state, lastSweep: before?.lastSweep ?? this.now() });
    }
    this.frontends = next;
    return actions;
  }

  /** Counts one access record; an ejection it causes. */
  observe(r: Pick<AccessRecord, "frontend" | "serverAddress" | "serverPort" | "status" | "refused">): OutlierAction[] {
    const f = this.frontends.get(r.frontend);
    if (!f || r.refused !== "" || r.serverPort === 0) return [];
    const host = hostOf(r.serverAddress, r.serverPort);
    if (!f.hosts.has(host)) return [];
    const st = f.state.get(host) ?? { failures: 0, ejections: 0, ejectedUntil: null, failedThisInterval: false };
    f.state.set(host, st);
    // Answers to requests sent before the ejection say nothing new.
    if (st.ejectedUntil !== null) return [];
    if (r.status < 100 || r.status > 599) return [];
    if (r.status < 500) {
      st.failures = 0;
      return [];
    }
    st.failures++;
    st.failedThisInterval = true;
    return this.ejectIfDue(r.frontend, f, host, st);
  }

  /** Brings back workloads whose time is up, decays the ejection counts, and ejects those that waited for room. */
  sweep(): OutlierAction[] {
    const now = this.now();
    const actions: OutlierAction[] = [];
    for (const [name, f] of this.frontends) {
      if (now - f.lastSweep < f.settings.intervalMs) continue;
      f.lastSweep = now;
      for (const [host, st] of f.state) {
        if (st.ejectedUntil !== null && st.ejectedUntil <= now) {
          st.ejectedUntil = null;
          st.failures = 0;
          st.failedThisInterval = false;
          actions.push({ kind: "restore", frontend: name, host, servers: f.hosts.get(host)! });
        } else if (st.ejectedUntil === null && !st.failedThisInterval && st.ejections > 0) st.ejections--;
        st.failedThisInterval = false;
      }
      for (const [host, st] of f.state) actions.push(...this.ejectIfDue(name, f, host, st));
    }
    return actions;
  }

  /** An eject action for every workload out now: what a new HAProxy worker (a reload, a restart) must be told again. */
  ejected(): OutlierAction[] {
    return [...this.frontends].flatMap(([name, f]) =>
      [...f.state].filter(([, st]) => st.ejectedUntil !== null).map(([host]) => ({ kind: "eject" as const, frontend: name, host, servers: f.hosts.get(host)! })),
    );
  }

  /** Workloads out now, per tenant and service (a service's ports together). */
  ejectedCounts(): { tenant: string; service: string; ejected: number }[] {
    const counts = new Map<string, { tenant: string; service: string; ejected: number }>();
    for (const f of this.frontends.values()) {
      const key = `${f.tenant}/${f.service}`;
      const c = counts.get(key) ?? { tenant: f.tenant, service: f.service, ejected: 0 };
      c.ejected += [...f.state.values()].filter((st) => st.ejectedUntil !== null).length;
      counts.set(key, c);
    }
    return [...counts.values()];
  }

  /** The tenant and service of a frontend this detector follows. */
  serviceOf(frontend: string): { tenant: string; service: string } | undefined {
    const f = this.frontends.get(frontend);
    return f && { tenant: f.tenant, service: f.service };
  }

  private ejectIfDue(name: string, f: FrontendState, host: string, st: HostState): OutlierAction[] {
    if (st.ejectedUntil !== null || st.failures < f.settings.consecutive5xx) return [];
    const out = [...f.state.values()].filter((s) => s.ejectedUntil !== null).length;
    if (out >= maxEjected(f.hosts.size, f.settings.maxEjectionPercent)) return [];
    st.ejections++;
    st.failures = 0;
    const cap = Math.max(MAX_EJECTION_MS, f.settings.baseEjectionMs);
    st.ejectedUntil = this.now() + Math.min(f.settings.baseEjectionMs * st.ejections, cap);
    return [{ kind: "eject", frontend: name, host, servers: f.hosts.get(host)! }];
  }
}

// SPDX-License-Identifier: Apache-2.0
// Outlier ejection's state machine (nodeagent/src/l7/outlier.ts), on a
// fake clock: what counts as a failure, when a workload goes out and for
// how long, how many may be out, and what a new document changes. The
// real HAProxy doing it is l7-traffic.test.ts's.
import { describe, expect, it } from "vitest";
import type { AccessRecord } from "../../nodeagent/src/l7/access-log.ts";
import type { L7Document, L7Outlier } from "../../nodeagent/src/l7/document.ts";
import { MAX_EJECTION_MS, maxEjected, OutlierDetector, type OutlierAction } from "../../nodeagent/src/l7/outlier.ts";

const SETTINGS: L7Outlier = { consecutive5xx: 3, intervalMs: 1_000, baseEjectionMs: 10_000, maxEjectionPercent: 50 };

/** A frontend over `n` workloads 10.0.0.1..n:8080, each a server of the default backend, the first also of a rule's backend. */
function doc(n: number, settings: L7Outlier | null = SETTINGS): L7Document {
  const servers = Array.from({ length: n }, (_, i) => ({ name: `w${i + 1}`, address: `198.18.0.${i + 1}`, port: 8080, weight: 1 }));
  return {
    proxyAddress: "198.18.1.1",
    frontends: [
      {
        name: "f-web",
        tenant: "acme",
        service: "web",
        vip: "198.19.0.1",
        port: 80,
        rules: [{ route: "r", rule: 0, matches: [], backends: [{ backend: "f-web-r", weight: 1 }] }],
        defaultBackend: "f-web-default",
        authorization: { governed: false, entries: [] },
        ...(settings ? { traffic: { policy: "p", outlier: settings } } : {}),
      },
    ],
    backends: [
      { name: "f-web-default", servers },
      { name: "f-web-r", servers: servers.slice(0, 1) },
    ],
    callers: [],
  };
}

const answer = (host: number, status: number, o: Partial<AccessRecord> = {}) => ({ frontend: "f-web", serverAddress: `198.18.0.${host}`, serverPort: 8080, status, refused: "", ...o });

function setup(n = 4, settings?: L7Outlier) {
  let now = 0;
  const d = new OutlierDetector(() => now);
  d.follow(doc(n, settings));
  return {
    d,
    advance(ms: number): OutlierAction[] {
      now += ms;
      return d.sweep();
    },
    fail(host: number, times: number, status = 503): OutlierAction[] {
      const actions: OutlierAction[] = [];
      for (let i = 0; i < times; i++) actions.push(...d.observe(answer(host, status)));
      return actions;
    },
  };
}

const kinds = (actions: OutlierAction[]) => actions.map((a) => `${a.kind} ${a.host}`);

describe("outlier ejection", () => {
  it("ejects after consecutive5xx failures in a row, from every backend section holding the workload", () => {
    const { d, fail } = setup();
    expect(fail(1, 2)).toEqual([]);
    const [eject] = fail(1, 1);
    expect(eject).toEqual({
      kind: "eject",
      frontend: "f-web",
      host: "198.18.0.1:8080",
      servers: [
        { backend: "f-web-default", server: "w1" },
        { backend: "f-web-r", server: "w1" },
      ],
    });
    expect(d.ejectedCounts()).toEqual([{ tenant: "acme", service: "web", ejected: 1 }]);
  });

  it("counts 5xx (HAProxy's own 502-504 for a server that did not answer among them) as failures, resets on any other answer, and ignores what says nothing of the server", () => {
    const { d, fail } = setup();
    fail(1, 2);
    d.observe(answer(1, 404));
    expect(fail(1, 2)).toEqual([]);
    d.observe(answer(1, 200));
    fail(1, 1, 500);
    // A client that hung up (-1) neither counts nor resets: a caller cannot eject a backend by leaving early.
    expect(fail(1, 10, -1)).toEqual([]);
    fail(1, 1, 504);
    // The proxy's own refusals and requests that reached no server say nothing of a workload.
    expect(d.observe(answer(1, 503, { refused: "overflow" }))).toEqual([]);
    expect(d.observe(answer(1, 503, { serverPort: 0, serverAddress: "" }))).toEqual([]);
    expect(d.observe(answer(9, 503))).toEqual([]);
    expect(d.observe(answer(1, 503, { frontend: "f-other" }))).toEqual([]);
    expect(kinds(fail(1, 1, 502))).toEqual(["eject 198.18.0.1:8080"]);
  });

  it("keeps a workload out for baseEjectionMs times its ejections (at most 300 s), brought back on the sweep after", () => {
    const { fail, advance } = setup();
    fail(1, 3);
    expect(advance(9_000)).toEqual([]);
    expect(kinds(advance(1_000))).toEqual(["restore 198.18.0.1:8080"]);
    // Failing again at once: out twice as long.
    fail(1, 3);
    expect(advance(19_000)).toEqual([]);
    expect(kinds(advance(1_000))).toEqual(["restore 198.18.0.1:8080"]);
    for (let k = 3; k <= 40; k++) {
      fail(1, 3);
      const out = Math.min(10_000 * k, MAX_EJECTION_MS);
      expect(advance(out - 1_000), `ejection ${k}`).toEqual([]);
      expect(kinds(advance(1_000)), `ejection ${k}`).toEqual(["restore 198.18.0.1:8080"]);
    }
  });

  it("forgives an ejection per healthy interval", () => {
    const { fail, advance, d } = setup();
    fail(1, 3);
    advance(10_000);
    fail(1, 3);
    advance(20_000);
    // Two ejections so far; three healthy intervals bring the count to zero: the next is a first ejection again.
    d.observe(answer(1, 200));
    advance(1_000);
    advance(1_000);
    advance(1_000);
    fail(1, 3);
    expect(advance(9_000)).toEqual([]);
    expect(kinds(advance(1_000))).toEqual(["restore 198.18.0.1:8080"]);
  });

  it("holds at most maxEjectionPercent of the workloads out (at least one), and ejects a waiting one when there is room", () => {
    expect([maxEjected(4, 50), maxEjected(4, 10), maxEjected(10, 10), maxEjected(3, 0), maxEjected(10, 100)]).toEqual([2, 1, 1, 1, 10]);
    const { fail, advance, d } = setup(4, { ...SETTINGS, maxEjectionPercent: 25 });
    expect(kinds(fail(1, 3))).toEqual(["eject 198.18.0.1:8080"]);
    expect(fail(2, 5)).toEqual([]);
    expect(d.ejectedCounts()[0]!.ejected).toBe(1);
    // Workload 1 is back at 10 s; the sweep that brings it back ejects workload 2, which failed meanwhile and waited.
    expect(advance(5_000)).toEqual([]);
    expect(kinds(advance(5_000))).toEqual(["restore 198.18.0.1:8080", "eject 198.18.0.2:8080"]);
    expect(d.ejectedCounts()[0]!.ejected).toBe(1);
  });

  it("a waiting workload that answers well meanwhile is not ejected", () => {
    const { fail, advance, d } = setup(4, { ...SETTINGS, maxEjectionPercent: 25 });
    fail(1, 3);
    fail(2, 3);
    d.observe(answer(2, 200));
    expect(kinds(advance(10_000))).toEqual(["restore 198.18.0.1:8080"]);
  });

  it("sweeps no faster than intervalMs", () => {
    const { fail, advance } = setup(4, { ...SETTINGS, intervalMs: 4_000, baseEjectionMs: 1_000 });
    fail(1, 3);
    expect(advance(1_000)).toEqual([]);
    expect(advance(2_000)).toEqual([]);
    expect(kinds(advance(1_000))).toEqual(["restore 198.18.0.1:8080"]);
  });

  it("tells a new worker every ejection in force", () => {
    const { fail, d } = setup();
    fail(1, 3);
    fail(3, 3);
    expect(kinds(d.ejected())).toEqual(["eject 198.18.0.1:8080", "eject 198.18.0.3:8080"]);
  });

  it("drops the state of workloads a new document no longer lists, and brings back those of a policy that no longer ejects", () => {
    const { fail, d } = setup();
    fail(1, 3);
    fail(2, 2);
    // Workload 1 left: its ejection is gone with it (nothing to bring back: HAProxy no longer has its servers).
    const shrunk = doc(4);
    shrunk.backends[0]!.servers = shrunk.backends[0]!.servers.slice(1);
    shrunk.backends[1]!.servers = shrunk.backends[0]!.servers.slice(0, 1);
    expect(d.follow(shrunk)).toEqual([]);
    expect(d.ejected()).toEqual([]);
    // Workload 2's two failures are kept: one more ejects it.
    expect(kinds(fail(2, 1))).toEqual(["eject 198.18.0.2:8080"]);
    // The policy drops outlierDetection: workload 2 comes back at once, and nothing more is counted.
    expect(kinds(d.follow(doc(4, null)))).toEqual(["restore 198.18.0.2:8080"]);
    expect(fail(3, 10)).toEqual([]);
    expect(d.ejectedCounts()).toEqual([]);
  });
});

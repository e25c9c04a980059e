/**
 * Scale benchmark, one command: npm run bench:scale (issue 20, items 1 and 2).
 *
 * On one real Postgres (a throwaway cluster with pg_stat_statements, or
 * DATABASE_URL), BENCH_REPLICAS API processes (default 3) serve
 * BENCH_NODES nodes (default 10,000), registered through the API, each with
 * one workload of one shared tenant. Client processes (poller.ts,
 * BENCH_CLIENTS of them) hold one `?since` long poll per node, each node on
 * its home replica (node i on replica i mod 3), a connection per poll.
 *
 * Measured and printed against the issue's goals:
 *   - registration time and nodes per second (goal: 10,000 in < 5 min);
 *   - per replica: held connections, file descriptors, RSS, Postgres
 *     connections, and RSS per held poll (RSS held minus RSS before / polls);
 *   - statements per unchanged poll over BENCH_IDLE_S (default 60) of polls
 *     timing out and polling again, net of what the replicas run with no
 *     poll held (goal 0);
 *   - status reports as agents send them (every node every 5 s for
 *     BENCH_STATUS_S, default 30; 0 leaves them out): reports per second,
 *     their latency, statements each and the replicas' CPU (reported, no goal);
 *   - a write reaching one node, and one reaching every node, BENCH_ROUNDS
 *     times: from just before the write is sent (conservative: the commit
 *     is later) to each affected poll's answer, p50/p99/max (goal p99 ≤ 1 s),
 *     no unaffected poll woken by the first; each replica's worst event-loop
 *     delay during the wave (goal < 100 ms); the replicas' CPU from the write
 *     to the last answer, per answered poll (no goal: what a wave costs);
 *   - BENCH_FULL_NODES (default 1,000) nodes polling for the full state
 *     (If-None-Match, as an agent's first fetch) woken by one write (< 1 s);
 *   - failover: one replica killed with SIGKILL while the polls are held,
 *     right after it acknowledged a write; the time until every poll it held
 *     is written to another replica (goal ≤ 5 s); then one write reaching
 *     every node: each converges to the latest hash, and the acknowledged
 *     write is there.
 * Everything it starts (Postgres, replicas, client processes, temp dirs) is
 * removed on exit, failure, Ctrl-C, and by the janitor should it be killed.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withCleanup } from "../support/cleanup.ts";
import { table } from "../support/load.ts";
import { call, Fleet, type FleetNode } from "./fleet.ts";
import { pool } from "../support/pool.ts";
import { Pollers } from "./pollers.ts";
import { Observer, startThrowawayPostgres } from "./postgres.ts";
import type { Answer, NodeView } from "./protocol.ts";
import { alive, cpuSeconds, establishedTo, treeCpuSeconds, eventLoopMaxSeconds, openFds, rssBytes, startReplicas, type Replica } from "./replicas.ts";
import { Goals, kib, load, mib, ms, spread, type Spread } from "./report.ts";

const env = (name: string, fallback: number) => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a whole number, got ${process.env[name]}`);
  return v;
};
const NODES = Math.max(2, env("BENCH_NODES", 10_000));
const REPLICAS = Math.max(2, env("BENCH_REPLICAS", 3));
const ROUNDS = Math.max(1, env("BENCH_ROUNDS", 3));
const IDLE_S = Math.max(4, env("BENCH_IDLE_S", 60));
/** The agent's wait is 30 s; a shorter idle window needs shorter waits for polls to time out within it. */
const WAIT_S = Math.max(2, env("BENCH_WAIT_S", Math.min(30, Math.floor(IDLE_S / 2))));
const CLIENTS = Math.max(1, env("BENCH_CLIENTS", Math.max(2, Math.ceil(NODES / 2500))));
const SETUP_CONCURRENCY = Math.max(1, env("BENCH_SETUP_CONCURRENCY", 16));
const FULL_NODES = Math.min(NODES, env("BENCH_FULL_NODES", 1000));
/** Seconds of status reports from every node at the agent's default interval (5 s); 0 leaves them out. */
const STATUS_S = env("BENCH_STATUS_S", 30);
const STATUS_INTERVAL_MS = 5000;
const OPERATOR = "weft_op_bench-scale-operator-token-0123456";
const op = { authorization: `Bearer ${OPERATOR}` };

/** Goals (issue 20). */
const GOAL = { registrationS: 300, waveMs: 1000, stallMs: 100, failoverMs: 5000, rssPerReplicaMiB: 300 } as const;
/** Bounds on every wait, so that a stuck run ends with a message instead of hanging. */
const BOUND = { heldMs: 120_000, waveMs: 60_000, failoverMs: 120_000, lingerMs: 2000 } as const;

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

function fdLimit(): string {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
  return line?.split(/\s{2,}/).slice(1, 3).join("/") ?? "?";
}

await withCleanup("bench/scale", async (cleanup) => {
  const startedAt = new Date();
  const loadAtStart = load();
  const run = Date.now().toString(36);
  const work = mkdtempSync(join(tmpdir(), "weft-scale-"));
  cleanup.track("dirs", work);
  cleanup.add("remove the temporary directory", () => rmSync(work, { recursive: true, force: true }));

  let databaseUrl = process.env.DATABASE_URL ?? "";
  const throwaway = databaseUrl === "";
  /** The throwaway cluster's CPU seconds so far (its postmaster and backends); NaN on a given DATABASE_URL. */
  let postgresCpu = () => Number.NaN;
  if (throwaway) {
    const pg = await startThrowawayPostgres(join(work, "pg"));
    postgresCpu = () => treeCpuSeconds(pg.pid);
    cleanup.trackPid(pg.pid);
    cleanup.add("stop Postgres", () => pg.stop());
    databaseUrl = pg.url;
  }
  const observer = await Observer.connect(databaseUrl);
  cleanup.add("close the observer's connection", () => observer.close());
  log(`Postgres ${throwaway ? "throwaway" : "DATABASE_URL"}, pg_stat_statements ${observer.statements ? "on" : "NOT loaded (statements not counted)"}`);

  const started: Replica[] = [];
  cleanup.add("stop the API replicas", async () => {
    await Promise.all(started.map((r) => r.api.stop()));
  });
  const replicas = await startReplicas(REPLICAS, databaseUrl, OPERATOR, (r) => {
    cleanup.trackPid(r.pid);
    started.push(r);
  });
  const living = () => replicas.filter(alive);
  /** Each replica's RSS with no node yet: what follows is state per node. */
  const rssAtStart = replicas.map((r) => rssBytes(r.pid));
  log(`${REPLICAS} replicas: ${replicas.map((r) => `${r.api.base} (pid ${r.pid})`).join(", ")}`);

  const fleet = new Fleet(() => living().map((r) => r.api.base), op, run);
  cleanup.add("remove the run's tenants and nodes", async () => {
    // A throwaway cluster goes whole; a given DATABASE_URL keeps only what was there before.
    if (!throwaway && living().length > 0) await fleet.remove(SETUP_CONCURRENCY);
    fleet.close();
  });

  // --- Registration ---------------------------------------------------------------------------------
  const shared = `scale-${run}`;
  const solo = `solo-${run}`;
  await fleet.tenant(shared);
  await fleet.tenant(solo);
  const setupStart = now();
  const marks: { at: number; done: number }[] = [{ at: setupStart, done: 0 }];
  let done = 0;
  await pool(
    Array.from({ length: NODES }, (_, i) => i),
    SETUP_CONCURRENCY,
    async (i) => {
      const node = await fleet.registerNode(i);
      await fleet.placeWorkload(shared, `w-${i}`, node);
      if (++done % Math.max(1, Math.floor(NODES / 10)) === 0) {
        const prev = marks.at(-1)!;
        marks.push({ at: now(), done });
        log(`registered ${done}/${NODES} nodes with a workload each, ${(((done - prev.done) * 1000) / (now() - prev.at)).toFixed(1)} nodes/s lately`);
      }
    },
  );
  const setupS = (now() - setupStart) / 1000;
  const lastTenth = marks.length >= 2 ? ((marks.at(-1)!.done - marks.at(-2)!.done) * 1000) / (marks.at(-1)!.at - marks.at(-2)!.at) : NODES / setupS;
  const oneNode = fleet.nodes[NODES - 1]!;
  await fleet.placeWorkload(solo, "w-0", oneNode);
  log(`registration: ${NODES} nodes in ${setupS.toFixed(1)} s (${(NODES / setupS).toFixed(1)} nodes/s overall, ${lastTenth.toFixed(1)} in the last tenth)`);

  // --- Client processes, first fetch ----------------------------------------------------------------
  const pollers = Pollers.start(CLIENTS, (pid) => cleanup.trackPid(pid));
  cleanup.add("stop the client processes", () => pollers.stop());
  const specs = fleet.nodes.map((n) => ({ index: n.index, name: n.name, credential: n.credential, home: n.index % REPLICAS }));
  const endpoints = replicas.map((r) => r.api.base);
  const firstFetchMs = await pollers.fetch(endpoints, WAIT_S, specs);
  log(`first fetch (full state, no wait) of ${NODES} nodes by ${CLIENTS} client processes: ${(firstFetchMs / 1000).toFixed(1)} s`);

  interface Figures {
    rss: number;
    fds: number;
    connections: number;
    pgConnections: number;
  }
  const figures = async (): Promise<Figures[]> => {
    const conns = establishedTo(replicas.map((r) => r.port));
    const out: Figures[] = [];
    // One at a time: the observer is one connection.
    for (const r of replicas) {
      out.push(
        alive(r)
          ? { rss: rssBytes(r.pid), fds: openFds(r.pid), connections: conns.get(r.port) ?? 0, pgConnections: await observer.connectionsOf(r.applicationName) }
          : { rss: Number.NaN, fds: Number.NaN, connections: Number.NaN, pgConnections: Number.NaN },
      );
    }
    return out;
  };
  const before = await figures();

  // --- Statements with no poll held (the baseline: background work of the replicas) -------------------
  const baselineS = Math.max(2, Math.floor(IDLE_S / 2));
  await observer.resetStatements();
  await sleep(baselineS * 1000);
  const baseline = await observer.statementsSinceReset();
  log(`baseline: ${baseline.calls} statements in ${baselineS} s with no poll held`);

  // --- Hold the polls ----------------------------------------------------------------------------------
  await pollers.hold();
  /** Until every node has a poll written to a live replica, and then a moment for the replicas to park them. */
  const allHeld = async (what: string) => {
    const deadline = now() + BOUND.heldMs;
    let views: NodeView[] = [];
    for (;;) {
      views = await pollers.view();
      const held = views.filter((v) => v.held && alive(replicas[v.replica]!)).length;
      if (held === NODES) break;
      if (now() > deadline) throw new Error(`${what}: only ${held} of ${NODES} polls held after ${BOUND.heldMs / 1000} s`);
      await sleep(200);
    }
    await sleep(1000 + NODES / 10);
    return views;
  };
  const heldStart = now();
  await allHeld("holding the polls");
  log(`${NODES} polls held in ${((now() - heldStart) / 1000).toFixed(1)} s`);
  const held = await figures();
  const pollsOn = replicas.map((_, i) => specs.filter((s) => s.home === i).length);

  // --- Unchanged polls ----------------------------------------------------------------------------------
  const cpuOf = () => replicas.map((r) => (alive(r) ? cpuSeconds(r.pid) : Number.NaN));
  await pollers.collect();
  await observer.resetStatements();
  const idleCpu = cpuOf();
  const idlePgCpu = postgresCpu();
  await sleep(IDLE_S * 1000);
  const idle = await observer.statementsSinceReset();
  const idleCpuShare = cpuOf().map((c, i) => (c - idleCpu[i]!) / IDLE_S);
  const idlePgShare = (postgresCpu() - idlePgCpu) / IDLE_S;
  const idleAnswers = (await pollers.collect()).answers;
  const unchangedPolls = idleAnswers.filter((a) => !a.changed).length;
  const netCalls = Math.max(0, idle.calls - (baseline.calls * IDLE_S) / baselineS);
  log(`idle: ${unchangedPolls} unchanged polls answered in ${IDLE_S} s, ${idle.calls} statements (${idleAnswers.length - unchangedPolls} polls answered with a change)`);

  // --- Status reports, as agents send them --------------------------------------------------------------
  let status: { reports: Spread; failed: number; perSecond: number; statementsEach: number; cpuShare: number[]; pgShare: number } | null = null;
  if (STATUS_S > 0) {
    await observer.resetStatements();
    const cpu0 = cpuOf();
    const pg0 = postgresCpu();
    const t0 = now();
    await pollers.report(STATUS_INTERVAL_MS);
    await sleep(STATUS_S * 1000);
    await pollers.report(0);
    const seconds = (now() - t0) / 1000;
    const cpuShare = cpuOf().map((c, i) => (c - cpu0[i]!) / seconds);
    const pgShare = (postgresCpu() - pg0) / seconds;
    // Reports in flight when told to stop finish within their own timeout.
    await sleep(2000);
    const calls = (await observer.statementsSinceReset()).calls;
    const times = await pollers.reports();
    const sent = times.filter(Number.isFinite);
    status = {
      reports: spread(sent),
      failed: times.length - sent.length,
      perSecond: times.length / seconds,
      statementsEach: (calls - (idle.calls / IDLE_S) * (seconds + 2)) / Math.max(1, times.length),
      cpuShare,
      pgShare,
    };
    await pollers.collect();
    // Reports the clients gave up on may still queue in the replicas: the waves start once each uses under a third of a core.
    const quietBy = now() + BOUND.waveMs;
    for (let busy = cpuOf(); ; ) {
      await sleep(1000);
      const next = cpuOf();
      if (next.every((c, i) => !(c - busy[i]! >= 0.33))) break;
      if (now() > quietBy) {
        log(`the replicas are still busy ${BOUND.waveMs / 1000} s after the status reports stopped: the waves start regardless`);
        break;
      }
      busy = next;
    }
    log(`status reports: ${times.length} in ${seconds.toFixed(0)} s (${status.perSecond.toFixed(0)}/s), ${status.failed} failed, p99 ${ms(status.reports.p99)} ms`);
  }

  // --- Waves ---------------------------------------------------------------------------------------------
  interface Wave {
    latencies: number[];
    fromAck: number[];
    ackMs: number;
    missing: number;
    woken: number;
    stallMs: number[];
    full: number[];
    /** CPU seconds each replica used from just before the write until the last affected poll's answer was collected. */
    cpuS: number[];
  }
  /**
   * Sends `write`, then gathers answers until every node of `affected` has
   * answered with a change (bounded), and BOUND.lingerMs more to see any poll
   * woken that should not have been. Latencies run from just before the write.
   */
  const wave = async (affected: Set<number>, write: () => Promise<number>): Promise<Wave> => {
    await allHeld("before a write");
    await pollers.collect();
    await Promise.all(living().map(eventLoopMaxSeconds)); // resets each replica's window
    const cpuBefore = cpuOf();
    const sentAt = now();
    const ackAt = await write();
    const first = new Map<number, Answer>();
    const others: Answer[] = [];
    const deadline = sentAt + BOUND.waveMs;
    let lastAffected = Number.POSITIVE_INFINITY;
    let cpuAtLast: number[] | undefined;
    while (now() < deadline && now() < lastAffected + BOUND.lingerMs) {
      await sleep(100);
      for (const a of (await pollers.collect()).answers) {
        if (!a.changed) continue;
        if (!affected.has(a.node)) others.push(a);
        else if (!first.has(a.node)) first.set(a.node, a);
      }
      if (first.size === affected.size && lastAffected === Number.POSITIVE_INFINITY) {
        lastAffected = now();
        cpuAtLast = cpuOf();
      }
    }
    const cpuS = (cpuAtLast ?? cpuOf()).map((c, i) => c - cpuBefore[i]!);
    const stall = await Promise.all(replicas.map((r) => (alive(r) ? eventLoopMaxSeconds(r).then((s) => s * 1000) : Number.NaN)));
    const answers = [...first.values()];
    return {
      latencies: answers.map((a) => a.at - sentAt),
      fromAck: answers.map((a) => a.at - ackAt),
      ackMs: ackAt - sentAt,
      missing: affected.size - first.size,
      woken: others.length,
      stallMs: stall,
      full: answers.filter((a) => a.full).map((a) => a.at - sentAt),
      cpuS,
    };
  };
  const everyNode = new Set(specs.map((s) => s.index));
  const waveRows: (string | number)[][] = [
    ["wave", "polls", "write ack ms", "p50 ms", "p99 ms", "max ms", "max from ack", "missing", "others woken", "worst stall per replica ms", "replicas' CPU µs per answered poll"],
  ];
  /** All replicas' CPU over the wave (the write, its pull, compiles, answers, re-polls) per poll answered. */
  const cpuPerPollUs = (w: Wave) => (w.cpuS.filter(Number.isFinite).reduce((a, b) => a + b, 0) * 1e6) / Math.max(1, w.latencies.length);
  const waveRow = (label: string, w: Wave, s: Spread = spread(w.latencies)) => [
    label,
    s.n,
    ms(w.ackMs),
    ms(s.p50),
    ms(s.p99),
    ms(s.max),
    ms(spread(w.fromAck).max),
    w.missing,
    w.woken,
    w.stallMs.map(ms).join(" / "),
    w.latencies.length >= 100 ? cpuPerPollUs(w).toFixed(0) : "-",
  ];
  const one: Wave[] = [];
  const all: Wave[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const a = await wave(new Set([oneNode.index]), () => fleet.placeWorkload(solo, `one-${round}`, oneNode));
    one.push(a);
    waveRows.push(waveRow(`${round} (a) one node`, a));
    const b = await wave(everyNode, () => fleet.placeWorkload(shared, `every-${round}`, fleet.nodes[0]!));
    all.push(b);
    waveRows.push(waveRow(`${round} (b) every node`, b));
    log(`round ${round}: one node ${ms(spread(a.latencies).max)} ms; every node p99 ${ms(spread(b.latencies).p99)} ms, max ${ms(spread(b.latencies).max)} ms`);
  }

  // --- Full-state polls ------------------------------------------------------------------------------------
  const step = NODES / FULL_NODES;
  const fullNodes = Array.from({ length: FULL_NODES }, (_, i) => specs[Math.floor(i * step)]!.index);
  await pollers.mode(fullNodes, "full");
  const full = await wave(everyNode, () => fleet.placeWorkload(shared, "full-state", fleet.nodes[0]!));
  waveRows.push(waveRow(`full state: ${FULL_NODES} If-None-Match polls among ${NODES}`, full, spread(full.full)));
  await pollers.mode(fullNodes, "delta");
  log(`full state: ${full.full.length} full answers, max ${ms(spread(full.full).max)} ms`);

  // --- Failover -----------------------------------------------------------------------------------------------
  await allHeld("before the failover");
  await pollers.collect();
  const victim = replicas[1]!;
  const onVictim = (await pollers.view()).filter((v) => v.replica === victim.index).length;
  const acked = `acked-${run}`;
  await fleet.placeWorkload(shared, acked, fleet.nodes[0]!, victim.api.base);
  victim.api.child.kill("SIGKILL");
  const killedAt = now();
  log(`killed replica ${victim.index} (pid ${victim.pid}) holding ${onVictim} polls, right after it acknowledged workload ${acked}`);
  let movedMs = Number.NaN;
  const failDeadline = killedAt + BOUND.failoverMs;
  const moves: { node: number; at: number }[] = [];
  for (;;) {
    const c = await pollers.collect();
    for (const f of c.failovers) if (f.from === victim.index) moves.push({ node: f.node, at: f.sentAt });
    const views = await pollers.view();
    const stranded = views.filter((v) => v.replica === victim.index || v.failed).length;
    if (stranded === 0 && new Set(moves.map((m) => m.node)).size >= onVictim) {
      movedMs = Math.max(...moves.map((m) => m.at)) - killedAt;
      break;
    }
    if (now() > failDeadline) throw new Error(`failover: ${stranded} polls still on the dead replica or failing after ${BOUND.failoverMs / 1000} s`);
    await sleep(100);
  }
  const afterKill = await figures();
  log(`every poll of the dead replica written to another within ${ms(movedMs)} ms`);
  const converge = await wave(everyNode, () => fleet.placeWorkload(shared, "after-failover", fleet.nodes[0]!));
  waveRows.push(waveRow("after failover (b) every node", converge));
  const views = await pollers.view();
  const byNode = new Map(views.map((v) => [v.node, v]));
  const survivors = living();
  let stale = 0;
  await pool(fleet.nodes, SETUP_CONCURRENCY, async (n: FleetNode) => {
    const v = byNode.get(n.index)!;
    const base = survivors[n.index % survivors.length]!.api.base;
    const res = await call(base, "GET", `/v1/nodes/${n.name}/datapath?since=${v.revision}`, { authorization: `Bearer ${n.credential}` });
    if (res.status !== 200 || res.etag !== v.etag) stale++;
  });
  const ackedPresent = await fleet.workloadExists(shared, acked);

  // --- Report ---------------------------------------------------------------------------------------------------
  const replicaRows: (string | number)[][] = [
    ["replica", "polls held", "connections", "fds before / held", "RSS MiB at start / nodes known / polls held", "RSS per node KiB", "RSS per held poll KiB", "Postgres connections", "CPU % idle polls / status reports"],
    ...replicas.map((r, i) => [
      `${r.index} (pid ${r.pid})`,
      pollsOn[i]!,
      held[i]!.connections,
      `${before[i]!.fds} / ${held[i]!.fds}`,
      `${mib(rssAtStart[i]!)} / ${mib(before[i]!.rss)} / ${mib(held[i]!.rss)}`,
      kib((before[i]!.rss - rssAtStart[i]!) / NODES),
      kib((held[i]!.rss - before[i]!.rss) / pollsOn[i]!),
      held[i]!.pgConnections,
      `${(idleCpuShare[i]! * 100).toFixed(0)} / ${status ? (status.cpuShare[i]! * 100).toFixed(0) : "-"}`,
    ]),
  ];
  const allLatencies = (ws: Wave[]) => spread(ws.flatMap((w) => w.latencies));
  const worstStall = Math.max(...[...one, ...all].flatMap((w) => w.stallMs.filter(Number.isFinite)));
  const goals = new Goals();
  // 10,000 nodes in 5 minutes is 30 ms a node on average: a smaller run must at least end at that pace.
  const goalMsPerNode = (GOAL.registrationS * 1000) / 10_000;
  goals.atMost(`registration: ms per node in the last tenth (10,000 in ${GOAL.registrationS / 60} min: ${goalMsPerNode} on average)`, 1000 / lastTenth, goalMsPerNode, "ms", {
    measured: `${(1000 / lastTenth).toFixed(0)} ms (${lastTenth.toFixed(1)} nodes/s; ${NODES} in ${setupS.toFixed(0)} s)`,
  });
  if (NODES >= 10_000) goals.atMost(`registration of ${NODES} nodes through the API`, setupS, GOAL.registrationS, "s", { strict: true });
  goals.atMost("statements per unchanged poll, net of the no-poll baseline", netCalls / unchangedPolls, 0, "", {
    measured: observer.statements
      ? `${(netCalls / unchangedPolls).toFixed(3)} (${idle.calls} in ${IDLE_S} s / ${unchangedPolls} polls; baseline ${baseline.calls} in ${baselineS} s)`
      : "not counted: pg_stat_statements is not loaded",
  });
  const oneS = allLatencies(one);
  goals.atMost(`(a) write reaching one node, p99 over ${ROUNDS} rounds`, oneS.p99, GOAL.waveMs, "ms");
  goals.check("(a) no unaffected poll woken", one.every((w) => w.woken === 0 && w.missing === 0), `${one.reduce((s, w) => s + w.woken, 0)} woken, ${one.reduce((s, w) => s + w.missing, 0)} missed`, "0");
  const allS = allLatencies(all);
  goals.atMost(`(b) write reaching every node, p99 over ${ROUNDS} rounds of ${NODES}`, allS.p99, GOAL.waveMs, "ms");
  goals.check("(b) every poll answered", all.every((w) => w.missing === 0), `${all.reduce((s, w) => s + w.missing, 0)} missed`, "0");
  goals.atMost("worst event-loop stall of a replica during a wave", worstStall, GOAL.stallMs, "ms", { strict: true });
  const fullS = spread(full.full);
  goals.atMost(`${FULL_NODES} full-state held polls woken by one write, all answered`, fullS.max, GOAL.waveMs, "ms", { strict: true, measured: `max ${ms(fullS.max)} ms (p99 ${ms(fullS.p99)}, ${fullS.n} answered)` });
  goals.atMost(`RSS per replica with ${NODES} polls held (goal for 10,000)`, Math.max(...held.map((f) => f.rss)) / 2 ** 20, GOAL.rssPerReplicaMiB, "MiB");
  goals.atMost(`failover: ${onVictim} polls of a killed replica written to another`, movedMs, GOAL.failoverMs, "ms");
  goals.check("failover: every node at the latest hash after one more write", stale === 0 && converge.missing === 0, `${stale} stale, ${converge.missing} not woken`, "0");
  goals.check("failover: the write the killed replica acknowledged is kept", ackedPresent, ackedPresent ? "present" : "LOST", "present");

  console.log(`\nbench/scale, ${startedAt.toISOString()}: ${NODES} nodes, ${REPLICAS} API replicas on ${throwaway ? "a throwaway Postgres 15" : "DATABASE_URL"}, polls wait ${WAIT_S} s`);
  console.log(`load average at start ${loadAtStart}, at the end ${load()}; ${CLIENTS} client processes (~${Math.ceil(NODES / CLIENTS)} sockets each, open-file limit ${fdLimit()})\n`);
  console.log(table(replicaRows));
  if (throwaway) console.log(`Postgres CPU (share of a core) with the polls held and idle: ${(idlePgShare * 100).toFixed(0)}%${status ? `; during the status reports: ${(status.pgShare * 100).toFixed(0)}%` : ""}`);
  if (status) {
    console.log(
      `status reports, every node every ${STATUS_INTERVAL_MS / 1000} s for ${STATUS_S} s: ${status.perSecond.toFixed(0)}/s, answered in p50 ${ms(status.reports.p50)} / p99 ${ms(status.reports.p99)} / max ${ms(status.reports.max)} ms, ${status.failed} failed, ${observer.statements ? `${status.statementsEach.toFixed(2)} statements each (net of the idle rate)` : "statements not counted"}`,
    );
  }
  console.log(`after the kill: ${afterKill.map((f, i) => `replica ${i} ${Number.isNaN(f.connections) ? "dead" : `${f.connections} connections, ${mib(f.rss)} MiB`}`).join("; ")}\n`);
  console.log(table(waveRows));
  const cpuAll = all.map(cpuPerPollUs);
  console.log(`\n(b) the replicas' CPU per answered poll over the ${ROUNDS} every-node rounds: ${cpuAll.map((us) => us.toFixed(0)).join(", ")} µs (the write, its pull, compiles, answers and re-polls, until the last answer was collected, within 100 ms; /proc ticks of 10 ms)`);
  console.log(`\nstatements in the idle window, most called:\n${idle.top.map((t) => `  ${t.calls}  ${t.query.replace(/\s+/g, " ").slice(0, 140)}`).join("\n")}\n`);
  console.log(table(goals.table()));
});

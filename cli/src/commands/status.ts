/**
 * weft status: one line per node, as an operator checks a rollout: is each
 * node reachable, has it applied what the compiler wants (desired against
 * applied revision and hash), and which workloads could it not attach.
 */
import { listAll } from "../client.ts";
import { choice, connection, ENDPOINT_OPTION, OUTPUT_OPTION, type Command } from "../command.ts";
import { UsageError } from "../errors.ts";
import type { Column } from "../kinds.ts";
import { FORMATS, render, table } from "../output.ts";
import { ROUTES } from "../routes.ts";

const HELP = `Usage: weft status [-o table|json|yaml]

One line per node (operator token): reachable or since when not, converged
or not, the desired and the applied revision/hash, and the workloads its
agent could not attach. Exits 0 whatever the nodes' state.

Options:
  -o, --output FMT   table (default), json or yaml (the API's node objects)
  --endpoint URL     the API
  -h, --help         this help`;

interface NodeRow {
  name: string;
  zone: string;
  reachable: boolean;
  unreachableSince: string | null;
  converged: boolean;
  convergedSince: string | null;
  desired: { revision: number; hash: string } | null;
  applied: { revision: number; hash: string; at: string } | null;
  unresolved: { tenant: string; workload: string; reason: string }[];
  errors: string[];
}

const state = (s: { revision: number; hash: string } | null): string => (s ? `${s.revision}/${s.hash.slice(0, 8)}` : "-");

const column = (header: string, value: (n: NodeRow) => string): Column => ({ header, value: (item) => value(item as unknown as NodeRow) });

/** The status columns; pure, so the test reads the same words the command prints. */
export const STATUS_COLUMNS: Column[] = [
  column("NODE", (n) => n.name),
  column("ZONE", (n) => n.zone),
  column("REACHABLE", (n) => reachable(n)),
  column("CONVERGED", (n) => (n.converged ? "yes" : "no")),
  column("DESIRED", (n) => state(n.desired)),
  column("APPLIED", (n) => state(n.applied)),
  column("UNRESOLVED", (n) => unresolved(n)),
  column("ERRORS", (n) => (n.errors.length ? n.errors.join("; ") : "-")),
];

function reachable(n: NodeRow): string {
  if (n.reachable) return "yes";
  return n.unreachableSince ? `no (since ${n.unreachableSince})` : "no";
}

function unresolved(n: NodeRow): string {
  if (n.unresolved.length === 0) return "-";
  return n.unresolved.map((u) => `${u.tenant}/${u.workload}: ${u.reason}`).join("; ");
}

export const status: Command = {
  name: "status",
  summary: "Nodes: desired against applied state, converged, reachable",
  help: HELP,
  options: { ...OUTPUT_OPTION, ...ENDPOINT_OPTION },
  async run(session, values, positionals) {
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`, "status");
    const format = choice(values, "output", FORMATS, "status");
    const { conn } = connection(session, values);
    const nodes: Record<string, unknown>[] = [];
    for await (const n of listAll(conn, ROUTES.nodes.list)) nodes.push(n);
    if (format !== "table") return void session.out(render(format, nodes));
    if (nodes.length === 0) return void session.err("No nodes registered.\n");
    session.out(table(STATUS_COLUMNS, nodes));
  },
};

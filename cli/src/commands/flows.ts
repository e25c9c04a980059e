/**
 * weft flows: the flows the datapath reported, one line each as `hubble
 * observe` prints them, or one JSON object per line. --follow keeps the
 * stream (Server-Sent Events) open until interrupted.
 */
import { listAll, refusal, send, type Connection } from "../client.ts";
import { choice, connection, ENDPOINT_OPTION, OUTPUT_OPTION, string, TENANT_OPTION, type Command, type Session } from "../command.ts";
import { CommandError, UsageError } from "../errors.ts";
import { formatFlow, type Flow } from "../flow-format.ts";
import { ROUTES, type Route } from "../routes.ts";
import { SseDecoder } from "../sse.ts";

const HELP = `Usage: weft flows [--tenant NAME | --operator] [--follow] [filters] [-o compact|json]

The flows the nodes reported: who talked to whom, and the verdict.
A tenant sees the flows where one side is its own workload; the operator
(--operator, or no tenant at all with an operator token) sees every flow.

Filters:
  --verdict V       forwarded, dropped, audit or translated
  --identity NAME   flows from or to this identity
  --hook H          flows one hook reported: ingress, egress (tc), sock (socket LB),
                    transport (the node's mTLS transport) or l7 (the node's L7 proxy)
  --reason R        flows with this reason (policy-deny, mtls-required, proxy-down, ...)
  --node NAME       flows seen on this node
  --since AGE       newer than AGE (e.g. 30s, 5m, 2h) or an RFC 3339 time

Options:
  -t, --tenant NAME  the tenant (default: the login's)
  --operator         every tenant's flows (operator token)
  -f, --follow       keep printing new flows until interrupted (Ctrl-C)
  -o, --output FMT   compact (default: one line per flow) or json (one object per line)
  --endpoint URL     the API
  -h, --help         this help

A line reads:
  Dec  6 16:20:01.123  node-a  acme/web 198.18.1.2:40000 -> acme/db 198.18.2.3:5432 tcp  DROPPED (policy-deny, policy db-ingress rule 0)`;

const VERDICTS = ["forwarded", "dropped", "audit", "translated"];
const HOOKS = ["ingress", "egress", "sock", "transport", "l7"];
/** A flow stream that says nothing, not even a heartbeat comment, for this long is dead. */
const SILENCE_MS = 60_000;

function printer(session: Session, output: string): (flow: Flow) => void {
  const timeZone = session.env.TZ || undefined;
  return output === "json" ? (f) => session.out(`${JSON.stringify(f)}\n`) : (f) => session.out(`${formatFlow(f, { timeZone })}\n`);
}

function parseFlow(data: string): Flow {
  try {
    return JSON.parse(data) as Flow;
  } catch {
    throw new CommandError(`the API sent a flow event that is not JSON: ${data.slice(0, 200)}`);
  }
}

async function follow(session: Session, conn: Connection, route: Route, params: Record<string, string>, query: Record<string, string | undefined>, print: (f: Flow) => void) {
  const stop = new AbortController();
  const onInterrupt = () => stop.abort();
  session.interrupted.addEventListener("abort", onInterrupt);
  let silence: NodeJS.Timeout | undefined;
  let silent = false;
  const armSilence = () => {
    clearTimeout(silence);
    silence = setTimeout(() => {
      silent = true;
      stop.abort();
    }, SILENCE_MS);
  };
  try {
    const res = await send(conn, route, { params, query: { ...query, follow: "true" }, signal: stop.signal }, "text/event-stream");
    if (res.status >= 400) throw refusal(res, await res.text());
    if (!(res.headers.get("content-type") ?? "").startsWith("text/event-stream"))
      throw new CommandError(`the API answered ${res.status} ${res.headers.get("content-type") ?? ""} instead of an event stream`);
    const decoder = new SseDecoder();
    const text = new TextDecoder();
    armSilence();
    for await (const chunk of res.body!) {
      armSilence();
      for (const e of decoder.push(text.decode(chunk as Uint8Array, { stream: true }))) {
        if (e.event === "flow") print(parseFlow(e.data));
        else if (e.event === "error") throw new CommandError(`the flow stream failed: ${e.data}`);
      }
    }
    throw new CommandError("the API closed the flow stream");
  } catch (err) {
    if (stop.signal.aborted && !silent) return; // the user left
    if (silent) throw new CommandError(`the flow stream has been silent for ${SILENCE_MS / 1000} s`);
    throw err;
  } finally {
    clearTimeout(silence);
    session.interrupted.removeEventListener("abort", onInterrupt);
  }
}

export const flows: Command = {
  name: "flows",
  summary: "Show flows (verdicts, drop reasons, identities), or follow them",
  help: HELP,
  options: {
    operator: { type: "boolean" },
    follow: { type: "boolean", short: "f" },
    verdict: { type: "string" },
    identity: { type: "string" },
    hook: { type: "string" },
    reason: { type: "string" },
    node: { type: "string" },
    since: { type: "string" },
    ...TENANT_OPTION,
    ...OUTPUT_OPTION,
    ...ENDPOINT_OPTION,
  },
  async run(session, values, positionals) {
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`, "flows");
    const output = choice(values, "output", ["compact", "json"], "flows");
    const verdict = string(values, "verdict");
    if (verdict !== undefined && !VERDICTS.includes(verdict)) throw new UsageError(`--verdict must be one of ${VERDICTS.join(", ")}`, "flows");
    const hook = string(values, "hook");
    if (hook !== undefined && !HOOKS.includes(hook)) throw new UsageError(`--hook must be one of ${HOOKS.join(", ")}`, "flows");
    if (values.operator && string(values, "tenant")) throw new UsageError("--operator and --tenant exclude each other", "flows");
    const { conn, settings } = connection(session, values);
    const tenant = values.operator ? undefined : (string(values, "tenant") ?? settings.tenant);
    const route = tenant ? ROUTES.tenantFlows : ROUTES.allFlows;
    const params: Record<string, string> = tenant ? { tenant } : {};
    const query = { verdict, identity: string(values, "identity"), hook, reason: string(values, "reason"), node: string(values, "node"), since: string(values, "since") };
    const print = printer(session, output);
    if (values.follow) return follow(session, conn, route, params, query, print);
    for await (const flow of listAll<Flow>(conn, route, { params, query })) print(flow);
  },
};

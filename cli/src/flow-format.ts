/**
 * One line per flow, as `hubble observe` prints them:
 *
 *   Dec  6 16:20:01.123  node-a  acme/web 198.18.1.2:40000 -> acme/db 198.18.2.3:5432 tcp  DROPPED (policy-deny, policy db-ingress rule 0)
 *
 * Pure: the time zone is a parameter (the command passes the machine's).
 */
import { printable } from "./printable.ts";

export interface FlowEndpoint {
  address: string;
  port?: number | null;
  identity?: string | null;
  tenant?: string | null;
  /** A reserved identity (world, host, ...) for an address no workload holds. */
  reserved?: string | null;
}

export interface Flow {
  id?: string;
  time: string;
  node: string;
  hook?: "ingress" | "egress" | "sock" | "transport";
  verdict: "forwarded" | "dropped" | "audit" | "translated" | string;
  reason?: string | null;
  protocol: string;
  source: FlowEndpoint;
  destination: FlowEndpoint;
  originalDestination?: { address: string; port?: number | null; service?: string | null } | null;
  policy?: { name: string; rule: number | string; direction?: string; mode?: string } | null;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `Dec  6 16:20:01.123` in the given IANA time zone (syslog's day padding, milliseconds). */
export function flowTime(iso: string, timeZone?: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone,
      month: "numeric",
      day: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
    })
      .formatToParts(date)
      .map((p) => [p.type, p.value]),
  );
  const ms = String(date.getUTCMilliseconds()).padStart(3, "0");
  return `${MONTHS[Number(parts.month) - 1]} ${String(parts.day).padStart(2, " ")} ${parts.hour}:${parts.minute}:${parts.second}.${ms}`;
}

const hostPort = (address: string, port?: number | null): string =>
  port === undefined || port === null || port === 0 ? address : address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;

/** `acme/web 198.18.1.2:40000`; `reserved:world 8.8.8.8:53`; just the address when nothing is known. */
export function endpoint(e: FlowEndpoint): string {
  const who = e.identity ? (e.tenant ? `${e.tenant}/${e.identity}` : e.identity) : e.reserved ? `reserved:${e.reserved}` : "";
  const where = hostPort(e.address, e.port);
  return who ? `${who} ${where}` : where;
}

const protocolName = (p: string): string => (/^\d+$/.test(p) ? `proto ${p}` : p);

/** What decided the verdict, in parentheses: the reason, then the policy rule. */
function because(flow: Flow): string {
  const parts: string[] = [];
  if (flow.verdict === "audit") parts.push(flow.reason ? `would deny: ${flow.reason}` : "would deny");
  else if (flow.reason) parts.push(flow.reason);
  if (flow.policy) parts.push(`policy ${flow.policy.name} rule ${flow.policy.rule}${flow.policy.direction ? ` ${flow.policy.direction}` : ""}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

function translation(flow: Flow): string {
  const o = flow.originalDestination;
  if (!o) return "";
  return ` [${o.service ? `service ${o.service} ` : ""}via ${hostPort(o.address, o.port)}]`;
}

const isEndpoint = (v: unknown): v is FlowEndpoint => typeof v === "object" && v !== null && typeof (v as FlowEndpoint).address === "string";

/** True when the value has what a line needs; the rest of the contract is optional to the line. */
export function isFlow(v: unknown): v is Flow {
  if (typeof v !== "object" || v === null) return false;
  const f = v as Flow;
  return [f.time, f.node, f.verdict, f.protocol].every((x) => typeof x === "string") && isEndpoint(f.source) && isEndpoint(f.destination);
}

/** The line for a flow; something else the API sent is shown as it came, never dropped. */
export function formatFlow(flow: Flow, opts: { timeZone?: string } = {}): string {
  if (!isFlow(flow)) return printable(`(not a flow) ${JSON.stringify(flow)}`);
  return printable(
    `${flowTime(flow.time, opts.timeZone)}  ${flow.node}  ${endpoint(flow.source)} -> ${endpoint(flow.destination)}` +
    `${translation(flow)} ${protocolName(flow.protocol)}  ${flow.verdict.toUpperCase()}${because(flow)}`
  );
}

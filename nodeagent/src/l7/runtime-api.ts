// SPDX-License-Identifier: Apache-2.0
/**
 * HAProxy's runtime API on its admin socket (mode 600 in the agent's state
 * directory, level admin): one command per connection, the answer read to
 * the end. What the driver uses of it: the worker's pid, the servers' state
 * (to check an apply), server weights (applied without a reload) and
 * server states (outlier ejection).
 */
import { connect } from "node:net";

/** A command unanswered this long fails (the worker is stuck or gone). */
export const COMMAND_TIMEOUT_MS = 5_000;
/** Answers longer than this are refused: a reply that big is not one of ours. */
const MAX_ANSWER = 16 * 1024 * 1024;

export class RuntimeApiError extends Error {}

/** Sends `command` and answers HAProxy's text. */
export function runtimeCommand(socketPath: string, command: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
  if (/[\n;]/.test(command)) return Promise.reject(new RuntimeApiError(`refused to send a runtime command with a newline or ';': ${JSON.stringify(command)}`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const socket = connect(socketPath);
    const fail = (why: string) => {
      socket.destroy();
      reject(new RuntimeApiError(`failed to run "${command}" on ${socketPath}: ${why}`));
    };
    socket.setTimeout(timeoutMs, () => fail(`no answer within ${timeoutMs} ms`));
    socket.on("error", (err) => fail(err.message));
    socket.on("connect", () => socket.end(`${command}\n`));
    socket.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_ANSWER) return fail(`answer longer than ${MAX_ANSWER} bytes`);
      chunks.push(chunk);
    });
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

/** A number `show info` answers (Pid, DroppedLogs, ...); null when it has no such line. */
export async function infoField(socketPath: string, field: string): Promise<number | null> {
  const text = await runtimeCommand(socketPath, "show info");
  const m = new RegExp(`^${field}: (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : null;
}

/** The drops a ring has not yet announced in its records (`show events`: "<ring> : type=buffer, N dropped"); null when there is no such ring. */
export async function ringDropped(socketPath: string, ring: string): Promise<number | null> {
  const text = await runtimeCommand(socketPath, "show events");
  const m = new RegExp(`^\\s*${ring}\\s*: type=buffer, (\\d+) dropped`, "m").exec(text);
  return m ? Number(m[1]) : null;
}

/** The serving worker's pid (`show info`). */
export async function workerPid(socketPath: string): Promise<number> {
  const pid = await infoField(socketPath, "Pid");
  if (!pid) throw new RuntimeApiError(`failed to read the worker's pid: "show info" has no Pid`);
  return pid;
}

export interface ServerState {
  backend: string;
  server: string;
  address: string;
  port: number;
  weight: number;
}

/** Every server of every backend (`show servers state`, format 1: the columns its header names). */
export async function serversState(socketPath: string): Promise<ServerState[]> {
  const text = await runtimeCommand(socketPath, "show servers state");
  const lines = text.split("\n");
  if (lines[0]?.trim() !== "1") throw new RuntimeApiError(`failed to read the servers' state: unknown format ${JSON.stringify(lines[0])}`);
  const header = (lines[1] ?? "").replace(/^#\s*/, "").split(/\s+/);
  const col = (name: string) => {
    const i = header.indexOf(name);
    if (i < 0) throw new RuntimeApiError(`failed to read the servers' state: no column ${name}`);
    return i;
  };
  const [be, srv, addr, port, weight] = ["be_name", "srv_name", "srv_addr", "srv_port", "srv_uweight"].map(col) as [number, number, number, number, number];
  return lines
    .slice(2)
    .filter((l) => l.trim() && !l.startsWith("#"))
    .map((l) => l.split(" "))
    .map((f) => ({ backend: f[be]!, server: f[srv]!, address: f[addr]!, port: Number(f[port]), weight: Number(f[weight]) }));
}

/** Sets one server's weight without a reload; HAProxy's answer is empty on success. */
export async function setServerWeight(socketPath: string, backend: string, server: string, weight: number): Promise<void> {
  const answer = (await runtimeCommand(socketPath, `set server ${backend}/${server} weight ${weight}`)).trim();
  if (answer !== "") throw new RuntimeApiError(`failed to set the weight of ${backend}/${server}: ${answer}`);
}

/** Takes a server out of rotation (maint: no new request, its open ones finish) or puts it back (ready); HAProxy's answer is empty on success. */
export async function setServerState(socketPath: string, backend: string, server: string, state: "maint" | "ready"): Promise<void> {
  const answer = (await runtimeCommand(socketPath, `set server ${backend}/${server} state ${state}`)).trim();
  if (answer !== "") throw new RuntimeApiError(`failed to set the state of ${backend}/${server} to ${state}: ${answer}`);
}

/** `show peers` flags: PEERS_F_RESYNC_LOCAL | PEERS_F_RESYNC_REMOTE (HAProxy's peers.c), the section's own resync done. */
const PEERS_RESYNC_FINISHED = 0x3;

/**
 * Whether the serving worker's peers section `section` has finished its own
 * resync: only such a worker teaches its tables to the next one on a
 * reload (HAProxy skips the lesson otherwise, and the new worker starts
 * empty). A worker started afresh finishes 5 s after it starts (HAProxy
 * waits that long for remote peers it does not have); one taught by its
 * predecessor, as soon as the lesson ends. True when it has no such section.
 */
export async function peersResynced(socketPath: string, section: string): Promise<boolean> {
  const text = await runtimeCommand(socketPath, "show peers");
  const m = new RegExp(`\\bid=${section} disabled=\\d+ flags=0x([0-9a-f]+)`).exec(text);
  return !m || (parseInt(m[1]!, 16) & PEERS_RESYNC_FINISHED) === PEERS_RESYNC_FINISHED;
}

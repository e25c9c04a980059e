// SPDX-License-Identifier: Apache-2.0
/**
 * The control channel's reader (the protocol is in control-schema.ts): one
 * JSON request a line, validated against the schema, dispatched, answered
 * with one line. A bad line is answered with an error and changes nothing;
 * a line past MAX_LINE_BYTES is refused without being buffered whole.
 */
import { Value } from "@sinclair/typebox/value";
import type { Readable, Writable } from "node:stream";
import { ControlRequest, type ControlAnswer } from "./control-schema.ts";

export const MAX_LINE_BYTES = 32 << 20;

export type Handler = (request: ControlRequest) => Promise<Omit<ControlAnswer, "id">>;

function firstError(value: unknown): string {
  const e = Value.Errors(ControlRequest, value).First();
  return e ? `${e.path || "/"}: ${e.message}` : "not a control request";
}

export function serveControl(input: Readable, output: Writable, handle: Handler): Promise<void> {
  const answer = (a: ControlAnswer) => output.write(`${JSON.stringify(a)}\n`);
  let chain = Promise.resolve();
  const dispatch = (line: string) => {
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return answer({ id: null, ok: false, error: "not JSON" });
    }
    const id = typeof (value as { id?: unknown })?.id === "number" ? (value as { id: number }).id : null;
    if (!Value.Check(ControlRequest, value)) return answer({ id, ok: false, error: firstError(value) });
    // One at a time, in order: a configure is applied before the next line is read.
    chain = chain.then(async () => {
      try {
        answer({ id, ...(await handle(value)) });
      } catch (err) {
        answer({ id, ok: false, error: (err as Error).message });
      }
    });
  };
  return new Promise((resolve) => {
    let pending = "";
    let skipping = false;
    input.setEncoding("utf8");
    input.on("data", (chunk: string) => {
      const lines = (pending + chunk).split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        if (skipping) skipping = false;
        else dispatch(line);
      }
      if (pending.length > MAX_LINE_BYTES) {
        if (!skipping) answer({ id: null, ok: false, error: `line longer than ${MAX_LINE_BYTES} bytes` });
        pending = "";
        skipping = true;
      }
    });
    input.once("end", () => void chain.then(resolve));
  });
}

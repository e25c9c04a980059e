/**
 * The agent runs the transport without tsx where Node strips types itself
 * (agent/transport-process.ts): every module the transport loads must be
 * erasable TypeScript. A parameter property or an enum anywhere in it
 * would fail here, not on a node at start-up.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { TRANSPORT_MAIN } from "../../nodeagent/src/agent/transport-process.ts";

const strips = Boolean((process.features as { typescript?: string | false }).typescript);

describe.skipIf(!strips)("the transport on Node's own type stripping", () => {
  it("starts without a loader and answers its control channel", async () => {
    const child = spawn(process.execPath, [TRANSPORT_MAIN, "--inbound", "127.0.0.1:0", "--outbound", "127.0.0.1:0", "--deliver", "plain"], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    try {
      const ready = await lines.next();
      expect(ready.done, stderr).toBe(false);
      expect(JSON.parse(ready.value as string)).toMatchObject({ ready: true });
      child.stdin.write(`${JSON.stringify({ id: 1, op: "metrics" })}\n`);
      const answer = JSON.parse((await lines.next()).value as string);
      expect(answer).toMatchObject({ id: 1, ok: true });
      expect(answer.metrics).toContain("weft_transport_connections_total");
      expect(stderr).not.toMatch(/ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX/);
    } finally {
      child.stdin.end();
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  }, 30_000);
});

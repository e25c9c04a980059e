/**
 * Headless Chromium (the Debian package `chromium`) driven over the DevTools
 * protocol on a pipe (--remote-debugging-pipe: fd 3 in, fd 4 out, one JSON
 * message per NUL), so a test needs no browser library and no debugging port.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { commandUnavailableReason } from "./prerequisites.ts";

export const CHROMIUM = process.env.WEFT_CHROMIUM ?? "chromium";

/** Why Chromium cannot run here, or null. */
export const chromiumUnavailableReason = () => commandUnavailableReason(CHROMIUM, ["--version"], "apt-get install chromium");

export interface Page {
  goto(url: string): Promise<void>;
  /** Evaluates `expression` in the page (awaiting a promise) and returns its JSON value. */
  evaluate<T>(expression: string): Promise<T>;
  /** Polls `expression` until it is truthy; returns that value. */
  waitFor<T>(expression: string, what: string, ms?: number): Promise<T>;
  screenshot(): Promise<Buffer>;
}

export interface Browser {
  newPage(width?: number, height?: number): Promise<Page>;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), "weft-chromium-"));
  const child: ChildProcess = spawn(
    CHROMIUM,
    ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--remote-debugging-pipe", `--user-data-dir=${profile}`, "about:blank"],
    { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  const toBrowser = child.stdio[3] as Writable;
  const fromBrowser = child.stdio[4] as Readable;
  let nextId = 1;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let buffered = "";
  fromBrowser.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    let end: number;
    while ((end = buffered.indexOf("\0")) >= 0) {
      const message = JSON.parse(buffered.slice(0, end)) as { id?: number; result?: unknown; error?: { message: string } };
      buffered = buffered.slice(end + 1);
      const waiter = message.id !== undefined ? pending.get(message.id) : undefined;
      if (!waiter) continue;
      pending.delete(message.id!);
      if (message.error) waiter.reject(new Error(`chromium: ${message.error.message}`));
      else waiter.resolve(message.result);
    }
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.then(() => {
    for (const w of pending.values()) w.reject(new Error(`chromium exited: ${stderr.slice(-2000)}`));
    pending.clear();
  });

  const send = <T>(method: string, params: object = {}, sessionId?: string) =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });

  return {
    async newPage(width = 1280, height = 2000) {
      const { targetId } = await send<{ targetId: string }>("Target.createTarget", { url: "about:blank" });
      const { sessionId } = await send<{ sessionId: string }>("Target.attachToTarget", { targetId, flatten: true });
      const call = <T>(method: string, params: object = {}) => send<T>(method, params, sessionId);
      await call("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false });
      const evaluate = async <T>(expression: string): Promise<T> => {
        const r = await call<{ result: { value?: T }; exceptionDetails?: { text: string; exception?: { description?: string } } }>("Runtime.evaluate", {
          expression,
          awaitPromise: true,
          returnByValue: true,
        });
        if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
        return r.result.value as T;
      };
      return {
        async goto(url) {
          await call("Page.navigate", { url });
        },
        evaluate,
        async waitFor<T>(expression: string, what: string, ms = 30_000) {
          const deadline = Date.now() + ms;
          for (;;) {
            const v = await evaluate<T>(expression).catch(() => undefined);
            if (v) return v;
            if (Date.now() > deadline) {
              const shown = await evaluate<string>("document.body?.innerText ?? ''").catch((e: Error) => e.message);
              throw new Error(`timed out after ${ms} ms waiting in the page for ${what}; it shows: ${shown.slice(0, 1000)}`);
            }
            await new Promise((r) => setTimeout(r, 100));
          }
        },
        async screenshot() {
          const { data } = await call<{ data: string }>("Page.captureScreenshot", { format: "png" });
          return Buffer.from(data, "base64");
        },
      };
    },
    async close() {
      await send("Browser.close").catch(() => undefined);
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Polls `probe` every 20 ms until it answers something other than undefined; throws after `boundMs`, naming `what`. */
export async function until<T>(what: string, boundMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${boundMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Reads `read` every `everyMs` until `ok` holds of its answer; throws with the last answer after `boundMs`. */
export async function untilHolds<T>(what: string, read: () => Promise<T> | T, ok: (v: T) => boolean, boundMs = 10_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${boundMs} ms waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

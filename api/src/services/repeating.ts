/**
 * A pass run again `everyMs` after the previous one ended (never two at
 * once, so a slow pass delays the next instead of piling up), on a timer
 * that keeps no process alive. stop() waits for a pass in flight, so the
 * database is not closed under it. A failed pass is logged; the next still runs.
 */
export interface Repeating {
  stop(): Promise<void>;
}

export function repeatEvery(everyMs: number, pass: () => Promise<unknown>, failed: (err: unknown) => void): Repeating {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  let stopped = false;
  const tick = () => {
    timer = setTimeout(() => {
      running = pass()
        .catch(failed)
        .finally(() => {
          running = undefined;
          if (!stopped) tick();
        });
    }, everyMs);
    timer.unref();
  };
  tick();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

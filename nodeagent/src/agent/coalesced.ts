// SPDX-License-Identifier: Apache-2.0
/**
 * One run of a task at a time for the agent's drivers (the transport's
 * configure, the L7 proxy's apply): a request during a run asks for one run
 * more, not one per request, so the newest state is always the last one
 * applied and a burst of changes costs at most two runs.
 */
export class Coalesced {
  private running: Promise<void> | null = null;
  private again = false;

  /** `stopped`: no further run once it holds (the driver is stopping). */
  constructor(
    private readonly task: () => Promise<void>,
    private readonly stopped: () => boolean,
  ) {}

  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.task();
      } while (this.again && !this.stopped());
    })().finally(() => (this.running = null));
  }

  /** Resolves once no run is under way. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }
}

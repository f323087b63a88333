import type { Logger } from "./log.ts";

/** Work a node does in the background, on its own schedule. */
export interface Worker {
  readonly name: string;
  start(): void;
  stop(): void | Promise<void>;
}

/**
 * The home of a node's background work (the snapshot flusher, failover checks and sweeps, the
 * medical retention sweep): started together once the node is ready, stopped together, in
 * reverse order, when it shuts down.
 */
export class Workers {
  private readonly all: Worker[] = [];
  private running = false;
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  add(worker: Worker): this {
    this.all.push(worker);
    if (this.running) worker.start();
    return this;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    for (const w of this.all) w.start();
    this.log.debug({ workers: this.all.map((w) => w.name) }, "background workers started");
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const w of [...this.all].reverse()) {
      try {
        await w.stop();
      } catch (error) {
        this.log.warn({ err: error, worker: w.name }, "a background worker did not stop cleanly");
      }
    }
  }
}

/** A worker that runs `task` every `ms` (and once at start), never two at a time. */
export function every(name: string, ms: number, task: () => Promise<unknown>, log: Logger): Worker {
  let timer: NodeJS.Timeout | undefined;
  let busy = false;
  const run = () => {
    if (busy) return;
    busy = true;
    task().catch((error) => log.warn({ err: error, worker: name }, `${name} failed; the next run tries again`)).finally(() => { busy = false; });
  };
  return {
    name,
    start() {
      run();
      timer = setInterval(run, ms);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
  };
}

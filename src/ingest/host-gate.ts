/**
 * Per-host politeness: at most `connections` requests in flight to one host, and request starts at least
 * `delayMs` apart (or the host's Crawl-delay, if longer). Exact spacing, not p-queue's fixed windows, which
 * can let two requests start a few milliseconds apart across a window edge.
 */
import { setTimeout as sleep } from 'node:timers/promises';

interface HostState {
  next: number;
  active: number;
  waiting: Array<() => void>;
}

export class HostGate {
  private readonly hosts = new Map<string, HostState>();
  private readonly delays = new Map<string, number>();

  constructor(
    private readonly connections: number,
    private readonly delayMs: number,
  ) {}

  /** A longer spacing for one host (its robots.txt Crawl-delay). */
  setDelay(host: string, ms: number): void {
    this.delays.set(host, ms);
  }

  /** Runs `task` when the host allows another request. */
  async run<T>(host: string, task: () => Promise<T>): Promise<T> {
    const h = this.hosts.get(host) ?? { next: 0, active: 0, waiting: [] };
    this.hosts.set(host, h);
    while (h.active >= this.connections) await new Promise<void>((resolve) => h.waiting.push(resolve));
    h.active++;
    try {
      // Reserve a start time before sleeping, so concurrent callers queue behind each other.
      const start = Math.max(Date.now(), h.next);
      h.next = start + Math.max(this.delayMs, this.delays.get(host) ?? 0);
      if (start > Date.now()) await sleep(start - Date.now());
      return await task();
    } finally {
      h.active--;
      h.waiting.shift()?.();
    }
  }
}

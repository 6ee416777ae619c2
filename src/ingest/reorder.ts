/**
 * A reorder stage: outcomes are put in any order (as downloads finish) and settled strictly in position order,
 * one at a time, so whatever `settle` does (dedupe, write) sees the rows as the list has them.
 *
 * What must stay true:
 * - Every position from 0 up to the last one put is put exactly once by its producer (a producer that fails
 *   puts a failure outcome); a position that is never put is reported by `drained`, never waited for forever.
 * - Settling runs apart from the producers: a finished producer puts its outcome and returns (it does not hold
 *   a concurrency slot while earlier positions settle). The feeder bounds what is held with `room`.
 * - A `settle` that throws (or a position put twice) stops the stage: nothing later is settled, `room` stops
 *   waiting and `drained` rejects with that error, so the unit is not committed.
 */
import { WildstreamError } from '../errors.js';

export class Reorder<T> {
  private readonly held = new Map<number, T>();
  private next = 0;
  /** The latest drain; `draining` says whether it is still going (set and cleared inside it, synchronously). */
  private running: Promise<void> = Promise.resolve();
  private draining = false;
  private failure: { error: unknown } | null = null;
  private waiters: Array<() => void> = [];

  constructor(private readonly settle: (position: number, item: T) => Promise<void>) {}

  /** Outcomes finished but not yet settled (each waits for an earlier position). */
  get size(): number {
    return this.held.size;
  }

  /** Whether a settle has thrown (the stage settles nothing more). */
  get failed(): boolean {
    return this.failure !== null;
  }

  /** Hands over the outcome of `position`; settles it, and any held successors, once every earlier one is. */
  put(position: number, item: T): void {
    if (this.failure) return;
    if (position < this.next || this.held.has(position)) {
      return this.fail(new WildstreamError(`reorder: position ${position} was put twice`));
    }
    this.held.set(position, item);
    if (position === this.next && !this.draining) this.running = this.drain();
  }

  /** Resolves once fewer than `limit` outcomes are held, or the stage has failed. */
  async room(limit: number): Promise<void> {
    while (this.held.size >= limit && !this.failure) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Waits until positions 0..count-1 are settled; rejects with a settle's error, or if one was never put. */
  async drained(count: number): Promise<void> {
    while (this.draining) await this.running;
    if (this.failure) throw this.failure.error;
    if (this.next < count) {
      throw new WildstreamError(`reorder: position ${this.next} of ${count} never finished`);
    }
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.held.has(this.next) && !this.failure) {
        const item = this.held.get(this.next)!;
        this.held.delete(this.next);
        await this.settle(this.next, item);
        this.next++;
        this.wake();
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.draining = false;
    }
  }

  private fail(error: unknown): void {
    this.failure ??= { error };
    this.held.clear();
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}

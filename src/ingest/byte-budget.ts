/**
 * A cap on the bytes held by response bodies being received at once, across every download of one Fetcher.
 *
 * Each download is a holder that grows its reservation as its buffer grows, waiting when the budget is spent.
 * Grants follow the banker's rule so waiting never deadlocks: the oldest open holder may always grow to
 * `perHolder` (the largest body), because a younger holder is granted only while what is left still covers
 * the oldest's remaining need. When the oldest closes, what it frees covers the next oldest, and so on.
 * This needs `total >= perHolder`, checked by the constructor.
 */
import { ConfigError } from '../errors.js';

export interface Holder {
  readonly id: number;
  held: number;
}

interface Waiter {
  holder: Holder;
  bytes: number;
  resolve(granted: boolean): void;
}

export class ByteBudget {
  private used = 0;
  private nextId = 0;
  private readonly open = new Map<number, Holder>(); // insertion order = age
  private readonly waiting: Waiter[] = [];
  /** Most bytes ever held at once. */
  peak = 0;

  constructor(
    readonly total: number,
    readonly perHolder: number,
  ) {
    if (!(total >= perHolder)) {
      throw new ConfigError(
        `byteBudget ${total} is smaller than one download's largest need ${perHolder} (maxBytes + decoder memory): raise byteBudget or lower maxBytes`,
      );
    }
  }

  get inUse(): number {
    return this.used;
  }

  openHolder(): Holder {
    const holder = { id: this.nextId++, held: 0 };
    this.open.set(holder.id, holder);
    return holder;
  }

  /**
   * Adds `bytes` to the holder's reservation: true when granted now, else a promise of the grant (false if the
   * holder was closed first). A holder never asks for more than `perHolder` in all.
   */
  grow(holder: Holder, bytes: number): true | Promise<boolean> {
    if (this.waiting.length === 0 && this.grantable(holder, bytes)) {
      this.take(holder, bytes);
      return true;
    }
    return new Promise((resolve) => {
      this.waiting.push({ holder, bytes, resolve });
      this.waiting.sort((a, b) => a.holder.id - b.holder.id);
      this.pump();
    });
  }

  /**
   * Ends the holder's growth but keeps `bytes` of its reservation until the returned release is called: a body
   * waiting for its decode still takes memory. A settled holder leaves the age order, so it no longer holds back
   * room for growth it will never ask for.
   */
  settle(holder: Holder, bytes: number): () => void {
    if (!this.open.delete(holder.id)) return () => {};
    const kept = Math.min(bytes, holder.held);
    this.used -= holder.held - kept;
    holder.held = 0;
    this.pump();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= kept;
      this.pump();
    };
  }

  /** Releases everything the holder reserved and drops its pending request. */
  close(holder: Holder): void {
    if (!this.open.delete(holder.id)) return;
    this.used -= holder.held;
    holder.held = 0;
    const i = this.waiting.findIndex((w) => w.holder === holder);
    if (i >= 0) this.waiting.splice(i, 1)[0]!.resolve(false);
    this.pump();
  }

  private grantable(holder: Holder, bytes: number): boolean {
    const free = this.total - this.used;
    if (bytes > free) return false;
    const oldest = this.open.values().next().value as Holder;
    return holder === oldest || free - bytes >= this.perHolder - oldest.held;
  }

  private take(holder: Holder, bytes: number): void {
    holder.held += bytes;
    this.used += bytes;
    if (this.used > this.peak) this.peak = this.used;
  }

  /** Grants waiting requests oldest holder first, stopping at the first that must still wait (no overtaking). */
  private pump(): void {
    while (this.waiting.length > 0 && this.grantable(this.waiting[0]!.holder, this.waiting[0]!.bytes)) {
      const w = this.waiting.shift()!;
      this.take(w.holder, w.bytes);
      w.resolve(true);
    }
  }
}

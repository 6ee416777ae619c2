/** A store that forwards to another except where a test makes a call fail or never answer. */
import type { Store } from '../../src/shards/store.js';

type Method = 'put' | 'get' | 'getRange' | 'head' | 'list' | 'delete';

/**
 * Decides a call's fate from its method, its arguments and how many calls of that method came before it:
 * `'stall'` (a promise that never settles, as a GET accepted and never answered), an Error to throw, or
 * undefined to forward the call.
 */
export type Fault = (method: Method, args: unknown[], nth: number) => 'stall' | Error | undefined;

export function faultyStore(inner: Store, fault: Fault): Store & { calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const decide = (method: Method, args: unknown[]) => {
    const nth = calls[method] ?? 0;
    calls[method] = nth + 1;
    return fault(method, args, nth);
  };
  const wrap =
    <A extends unknown[], R>(method: Method, call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const fate = decide(method, args);
      if (fate === 'stall') return new Promise<R>(() => {});
      if (fate) throw fate;
      return call(...args);
    };
  return {
    url: inner.url,
    calls,
    put: wrap('put', (key, body) => inner.put(key, body)),
    get: wrap('get', (key) => inner.get(key)),
    getRange: wrap('getRange', (key, start, end, options) => inner.getRange(key, start, end, options)),
    head: wrap('head', (key) => inner.head(key)),
    delete: wrap('delete', (key) => inner.delete(key)),
    async *list(prefix: string) {
      const fate = decide('list', [prefix]);
      if (fate === 'stall') await new Promise(() => {});
      if (fate) throw fate;
      yield* inner.list(prefix);
    },
  };
}

/**
 * Waiting that a stop signal can cut short. A stalled read (a GET accepted and never answered) leaves its
 * promise pending; whoever awaits it must still see SIGINT/SIGTERM within moments, so every wait of the
 * data path goes through `abortable`. The abandoned promise is kept from becoming an unhandled rejection.
 */

/** `promise`, or a rejection with `signal.reason` as soon as the signal aborts (at once if it already has). */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Whether `err` is the rejection of a wait that `signal` cut short. */
export function isAbort(err: unknown, signal: AbortSignal | undefined): boolean {
  return Boolean(signal?.aborted) && (err === signal!.reason || (err instanceof Error && err.name === 'AbortError'));
}

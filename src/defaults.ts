/**
 * Options objects over defaults. `{ ...defaults, ...options }` lets a key that is present but `undefined` (an
 * unset flag passed on, `{ cursor: opts.cursor }`) replace its default, which TypeScript's spread type does not
 * show; spreading `defined(options)` instead keeps every default an option leaves unset. A base module.
 */

/** `options` without its `undefined`-valued keys (a shallow copy; the type is unchanged). */
export function defined<O extends object>(options: O): O {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) if (value !== undefined) out[key] = value;
  return out as O;
}

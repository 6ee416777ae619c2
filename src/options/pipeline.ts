/**
 * Pipeline keys from option declarations: `unitSize` is `unit_size:` in a pipeline file, checked by the same
 * bounds as its flag. Unknown keys are errors that name the nearest known key.
 */
import { closest, distance } from 'fastest-levenshtein';
import { z } from 'zod';
import { camel, snake, type OptionSet, type OptionValues } from './declare.js';

/**
 * The zod schema of a pipeline stage: every option of `set` under its snake_case key (a default filled in when
 * absent), plus `extra` keys that only a pipeline has (e.g. `lists`, `seeds`). Unknown keys are refused. It
 * parses to the camelCase values a stage function takes.
 */
// `{}` is zod's own empty shape: no extra keys.
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export function stageSchema<S extends OptionSet, E extends z.ZodRawShape = {}>(
  set: S,
  extra?: E,
): z.ZodType<OptionValues<S> & z.infer<z.ZodObject<E>>> {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, d] of Object.entries(set)) {
    shape[snake(key)] =
      d.presence === 'required'
        ? d.schema
        : d.default !== undefined
          ? d.schema.optional().transform((v) => v ?? d.default)
          : d.schema.optional();
  }
  Object.assign(shape, extra ?? {});
  return z
    .strictObject(shape)
    .transform((v) => Object.fromEntries(Object.entries(v).map(([k, x]) => [camel(k), x]))) as never;
}

/** The key most like `key` among `known`, when it is close enough to be a typo. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  if (known.length === 0) return undefined;
  const best = closest(key, [...known]);
  return distance(key, best) <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** The keys a schema accepts at `path` (through optional, default and transform wrappers). */
export function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let node: unknown = schema;
  const unwrap = () => {
    for (;;) {
      const def = (node as { _zod?: { def: Record<string, unknown> } })._zod?.def;
      if (!def) return undefined;
      if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable') node = def.innerType;
      else if (def.type === 'pipe') node = def.in;
      else return def;
    }
  };
  for (const key of path) {
    const def = unwrap();
    if (def?.type !== 'object') return [];
    node = (def.shape as Record<string, unknown>)[String(key)];
  }
  const def = unwrap();
  return def?.type === 'object' ? Object.keys(def.shape as object) : [];
}

/** One line for the first problem zod found: the dotted key, what is wrong, and for an unknown key the nearest one. */
export function describeIssue(schema: z.ZodType, error: z.ZodError): string {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const known = keysAt(schema, issue.path);
    return issue.keys
      .map((k) => {
        const near = nearestKey(k, known);
        return `${[...issue.path, k].join('.')}: unknown key${near ? ` (did you mean ${near}?)` : ''}`;
      })
      .join('; ');
  }
  const what = /received undefined/.test(issue.message) ? 'required, missing' : issue.message;
  return `${issue.path.join('.') || '(top level)'}: ${what}`;
}

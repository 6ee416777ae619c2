/**
 * One declaration per option. A stage lists its options once (name, type, bounds, default, description) and
 * everything else derives from that list: the command-line flag (`--unit-size <n>`, commander.ts), the
 * pipeline key (`unit_size:`, pipeline.ts) and the TypeScript type of the parsed values (`OptionValues`).
 *
 * The keys of an option set are camelCase (`unitSize`); the flag is their kebab-case, the pipeline key their
 * snake_case. A declaration checks a value the same way whichever side it came from: `schema` checks a
 * pipeline value (YAML already typed it), `fromText` turns a flag's text into a value and checks it.
 */
import { z } from 'zod';
import { defined } from '../defaults.js';

/** Whether a parsed value is always there: given a default, required, or possibly undefined. */
export type Presence = 'default' | 'required' | 'optional';

export interface Decl<T, P extends Presence = Presence> {
  /** `value`: `--x <arg>`; `flag`: `--x` (false unless given); `negatable`: `--no-x` (true unless given); `list`: `--x <arg...>`. */
  readonly kind: 'value' | 'flag' | 'negatable' | 'list';
  readonly presence: P;
  /** One line for `--help` and the pipeline docs. */
  readonly description: string;
  /** The flag's value placeholder: `n` gives `--batch <n>`. */
  readonly placeholder: string;
  /** Checks (and normalises) a pipeline value. */
  readonly schema: z.ZodType<T>;
  /** A flag's text -> the value; throws an Error saying what was expected. */
  readonly fromText: (text: string) => T;
  readonly default?: T;
  /** How `--help` shows a default that is chosen at run time, e.g. `auto: from the batch size`. */
  readonly defaultText?: string;
  readonly choices?: readonly string[];
  /** The values a number takes, as `--help` shows them: `integer >= 1`, `number 0 to 1`. */
  readonly bounds?: string;
}

// Decl is invariant in its value type (it both parses to and describes T), so only `any` matches every declaration.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyDecl = Decl<any, Presence>;
export type OptionSet = Readonly<Record<string, AnyDecl>>;

type ValueOf<D> = D extends Decl<infer T, Presence> ? T : never;

/**
 * The parsed values of an option set: what a command hands its stage function. Options with a default (or
 * required) are always there; the others may be absent.
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- matching optional declarations of any value type */
export type OptionValues<S extends OptionSet> = {
  -readonly [K in keyof S as S[K] extends Decl<any, 'optional'> ? never : K]: ValueOf<S[K]>;
} & {
  -readonly [K in keyof S as S[K] extends Decl<any, 'optional'> ? K : never]?: ValueOf<S[K]>;
};
/* eslint-enable @typescript-eslint/no-explicit-any */

interface Common {
  description: string;
  placeholder?: string;
  defaultText?: string;
  required?: true;
}

type PresenceOf<O> = O extends { required: true }
  ? 'required'
  : O extends { default: unknown }
    ? 'default'
    : 'optional';

function decl<T, P extends Presence>(
  o: Common & { default?: T },
  kind: Decl<T, P>['kind'],
  schema: z.ZodType<T>,
  fromText: (text: string) => T,
  extra: Partial<Decl<T, P>> = {},
): Decl<T, P> {
  const presence = (o.required ? 'required' : o.default !== undefined ? 'default' : 'optional') as P;
  return {
    kind,
    presence,
    description: o.description,
    placeholder: o.placeholder ?? 'value',
    schema,
    fromText,
    default: o.default,
    defaultText: o.defaultText,
    ...extra,
  };
}

/** `>= 1` without a max, `1 to 64` with one. */
const range = (min: number, max: number | undefined) => (max === undefined ? `>= ${min}` : `${min} to ${max}`);

/** An integer in [min, max]. */
export function int<const O extends Common & { min: number; max?: number; default?: number }>(
  o: O,
): Decl<number, PresenceOf<O>> {
  const max = o.max ?? Number.MAX_SAFE_INTEGER;
  const bounds = `integer ${range(o.min, o.max)}`;
  const fromText = (text: string): number => {
    const n = Number(text);
    if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < o.min || n > max) {
      throw new Error(`expected an ${o.max === undefined ? bounds : `integer from ${o.min} to ${max}`}, got "${text}"`);
    }
    return n;
  };
  const schema = z.number().int().min(o.min).max(max);
  return decl({ placeholder: 'n', ...defined(o) }, 'value', schema, fromText, { bounds });
}

/** A finite number in [min, max]. */
export function num<const O extends Common & { min: number; max?: number; default?: number }>(
  o: O,
): Decl<number, PresenceOf<O>> {
  const max = o.max ?? Number.MAX_VALUE;
  const bounds = `number ${range(o.min, o.max)}`;
  const fromText = (text: string): number => {
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n) || n < o.min || n > max)
      throw new Error(`expected a ${o.max === undefined ? bounds : `number from ${o.min} to ${max}`}, got "${text}"`);
    return n;
  };
  return decl({ placeholder: 'x', ...defined(o) }, 'value', z.number().min(o.min).max(max), fromText, { bounds });
}

/**
 * A string; `check` (if any) validates or normalises it at the edge and throws an Error saying why it is
 * wrong (a crop spec, a URL). The parsed value is what `check` returns.
 */
export function text<const O extends Common & { default?: string; minLength?: number; check?: (s: string) => string }>(
  o: O,
): Decl<string, PresenceOf<O>> {
  const check = o.check ?? ((s: string) => s);
  const min = o.minLength ?? 0;
  const fromText = (s: string): string => {
    if (s.length < min) throw new Error(`expected at least ${min} character${min === 1 ? '' : 's'}`);
    return check(s);
  };
  const schema = z
    .string()
    .min(min)
    .transform((s, ctx) => {
      try {
        return check(s);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }) as unknown as z.ZodType<string>;
  return decl(o, 'value', schema, fromText);
}

/** One of a fixed set of words. */
export function choice<
  const C extends readonly [string, ...string[]],
  const O extends Common & { default?: C[number] },
>(choices: C, o: O): Decl<C[number], PresenceOf<O>> {
  const fromText = (s: string): C[number] => {
    if (!choices.includes(s)) throw new Error(`expected one of ${choices.join(', ')}, got "${s}"`);
    return s;
  };
  return decl(o, 'value', z.enum(choices) as unknown as z.ZodType<C[number]>, fromText, { choices });
}

/** A switch, off unless given (`--append`; `append: true`). */
export function flag(o: { description: string }): Decl<boolean, 'default'> {
  return decl({ ...o, default: false }, 'flag', z.boolean(), () => true);
}

/** A switch left unset unless given, so that its consumer can choose (`--s3-path-style`: on when an endpoint is set). */
export function maybeFlag(o: { description: string; defaultText?: string }): Decl<boolean, 'optional'> {
  return decl(o, 'flag', z.boolean(), () => true);
}

/** A switch, on unless turned off (`--no-resume`; `resume: false`). */
export function negatable(o: { description: string }): Decl<boolean, 'default'> {
  return decl({ ...o, default: true }, 'negatable', z.boolean(), () => false);
}

/** What a YAML value is, as a message names it: `a number`, `a mapping`, `null`. */
const yamlType = (v: unknown): string =>
  v === null ? 'null' : `a ${Array.isArray(v) ? 'list' : typeof v === 'object' ? 'mapping' : typeof v}`;

/**
 * The one rule for every list of strings a pipeline takes, declared (`list`, `words`) or a pipeline's own
 * (`ingest.lists`, `crawl.seeds`): a YAML list, or one string as a list of one (`lists: urls.txt`, as
 * img2dataset's url_list takes one path). Another type is refused saying what was expected and what was given;
 * `item` checks each string (its issue names the index: `lists.0`).
 */
export function stringList(item: z.ZodType<string> = z.string(), min = 0): z.ZodType<string[]> {
  const list = z
    .array(item, {
      error: (issue) =>
        issue.code === 'invalid_type' && issue.input !== undefined
          ? `expected a string or a list of strings, got ${yamlType(issue.input)}`
          : undefined, // absent: zod's own message, which describeIssue reads as "required, missing"
    })
    .min(min);
  return z.preprocess((v) => (typeof v === 'string' ? [v] : v), list) as unknown as z.ZodType<string[]>;
}

/** Several strings: `--allow-address a b` on the command line, a YAML list (or one string) in a pipeline. */
export function list<const O extends Common & { default?: string[] }>(o: O): Decl<string[], PresenceOf<O>> {
  return decl(o, 'list', stringList(), (s) => [s]);
}

/**
 * Several words given as one comma-separated string (`--hosts a,b`), or as a YAML list in a pipeline. `check`
 * (if any) validates or normalises each word, as text's does, so that a flag and a pipeline key refuse the
 * same words with the same message.
 */
export function words<const O extends Common & { check?: (word: string) => string }>(
  o: O,
): Decl<string[], PresenceOf<O>> {
  const check = o.check ?? ((w: string) => w);
  const split = (s: string) =>
    s
      .split(',')
      .map((w) => w.trim())
      .filter(Boolean)
      .map(check);
  const schema = stringList().transform((v, ctx) => {
    try {
      return v.flatMap(split);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  }) as unknown as z.ZodType<string[]>;
  return decl(o, 'value', schema, split);
}

/** `unitSize` -> `unit-size`. */
export const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
/** `unitSize` -> `unit_size`. */
export const snake = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
/** `unit_size` -> `unitSize`. */
export const camel = (key: string): string => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * How a message names an option for the person who set it: by its flag when a command runs (`--steps`,
 * `--no-resume`), by its key in the stage of a pipeline file when `wildstream run` does (`train.steps`,
 * `train.resume=false`, as `--set` takes it). Keys are an option set's camelCase keys.
 */
export interface OptionNames {
  /** The option: `--steps`; `train.steps`. */
  of(key: string): string;
  /** The option with a value: `--steps 20`, `--no-resume`, `--lars-all`; `train.steps=20`, `train.resume=false`. */
  set(key: string, value: string | number | boolean): string;
}

/** A command's flags. */
export const FLAG_NAMES: OptionNames = {
  of: (key) => `--${kebab(key)}`,
  set: (key, value) =>
    value === true ? `--${kebab(key)}` : value === false ? `--no-${kebab(key)}` : `--${kebab(key)} ${value}`,
};

/** The keys of pipeline stage `stage` (`train`, `ingest`, ...). */
export function pipelineNames(stage: string): OptionNames {
  const of = (key: string) => `${stage}.${snake(key)}`;
  return { of, set: (key, value) => `${of(key)}=${value}` };
}

/** The values an option set gives when nothing is set: the defaults, flags off, negatables on. */
export function defaults<S extends OptionSet>(set: S): Partial<OptionValues<S>> {
  const out: Record<string, unknown> = {};
  for (const [key, d] of Object.entries(set)) if (d.default !== undefined) out[key] = d.default;
  return out as Partial<OptionValues<S>>;
}

/** A copy of `set` without `keys` (a command that takes those from elsewhere, e.g. a positional argument). */
export function omit<S extends OptionSet, K extends keyof S>(set: S, ...keys: K[]): Omit<S, K> {
  const out: Record<string, AnyDecl> = { ...set };
  for (const k of keys) delete out[k as string];
  return out as Omit<S, K>;
}

/**
 * `set` with `keys` optional and without a default (a pipeline key that another stage fills in when absent,
 * e.g. `train.data` from `ingest.out`).
 */
export function optional<S extends OptionSet, K extends keyof S>(
  set: S,
  ...keys: K[]
): Omit<S, K> & { [P in K]: S[P] extends Decl<infer T, Presence> ? Decl<T, 'optional'> : never } {
  const out: Record<string, AnyDecl> = { ...set };
  for (const k of keys) out[k as string] = { ...set[k]!, presence: 'optional', default: undefined };
  return out as never;
}

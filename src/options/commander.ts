/**
 * Command-line flags from option declarations: `unitSize: int({ min: 1, ... })` becomes `--unit-size <n>` with its
 * help line (bounds, choices, default), checked as it is parsed. A bad value is commander's usage error (the CLI
 * exits 2), and so is a single-valued option given twice (a ConfigError, refuseRepeats).
 */
import { Command, Help, InvalidArgumentError, Option } from 'commander';
import type { EventEmitter } from 'node:events';
import { ConfigError } from '../errors.js';
import { kebab, type AnyDecl, type OptionSet, type OptionValues } from './declare.js';

/** The declaration behind each Option that toOption made, for its help line. */
const DECLS = new WeakMap<Option, AnyDecl>();

/**
 * An option's `--help` line: its description, then in one parenthesis the values it takes (bounds or choices)
 * and its default (the value, or the text of a default chosen at run time).
 */
export function optionHelp(option: Option): string {
  const d = DECLS.get(option);
  if (!d) return new Help().optionDescription(option);
  const extra: string[] = [];
  if (d.bounds) extra.push(d.bounds);
  if (option.argChoices) extra.push(`choices: ${option.argChoices.map((c) => JSON.stringify(c)).join(', ')}`);
  if ((d.kind === 'value' || d.kind === 'list') && d.default !== undefined)
    extra.push(`default: ${d.defaultText ?? JSON.stringify(d.default)}`);
  else if (d.defaultText) extra.push(`default: ${d.defaultText}`);
  return extra.length > 0 ? `${d.description} (${extra.join(', ')})` : d.description;
}

/** The commander Option of one declaration. */
export function toOption(key: string, d: AnyDecl): Option {
  const name = kebab(key);
  const flags =
    d.kind === 'flag'
      ? `--${name}`
      : d.kind === 'negatable'
        ? `--no-${name}`
        : d.kind === 'list'
          ? `--${name} <${d.placeholder}...>`
          : `--${name} <${d.placeholder}>`;
  const option = new Option(flags, d.description);
  if (d.choices) option.choices(d.choices);
  else if (d.kind === 'value' || d.kind === 'list') {
    option.argParser((text: string, previous: unknown) => {
      try {
        const value = d.fromText(text);
        // A list's values accumulate over its values and repeated flags; its default is replaced, not extended.
        return d.kind === 'list' && Array.isArray(previous) && previous !== d.default ? [...previous, ...value] : value;
      } catch (err) {
        throw new InvalidArgumentError((err as Error).message);
      }
    });
  }
  if ((d.kind === 'value' || d.kind === 'list') && d.default !== undefined) option.default(d.default, d.defaultText);
  if (d.presence === 'required') option.makeOptionMandatory();
  DECLS.set(option, d);
  return option;
}

/**
 * Adds every option of `set` to `cmd` (in declaration order), each with its help line (optionHelp); a
 * single-valued one given twice is refused (refuseRepeats).
 */
export function addOptions(cmd: Command, set: OptionSet): Command {
  for (const [key, d] of Object.entries(set)) {
    const option = toOption(key, d);
    cmd.addOption(option);
    refuseRepeats(cmd, option);
  }
  return cmd.configureHelp({ ...cmd.configureHelp(), optionDescription: optionHelp });
}

/**
 * Refuses `option` given a second time on one command line: commander keeps the last value without a word, so
 * `--steps 10 ... --steps 20` in a script trains 20 steps and hides the slip. Every spelling counts (`--steps=20`,
 * `--no-resume`, a short alias), as each reaches commander's one `option:<name>` event. Variadic options
 * (`--allow-address a b --allow-address c`) are meant to repeat and are left alone. A ConfigError (exit 2).
 */
function refuseRepeats(cmd: Command, option: Option): void {
  if (option.variadic) return;
  const key = option.attributeName();
  // Before commander's own listener stores this occurrence, a value from the command line means a second one.
  // The source is reset by each parse (commander restores its state), so a command parsed twice is not confused.
  let first = '';
  // A Command is an EventEmitter; commander's typings declare only its `on`.
  (cmd as unknown as EventEmitter).prependListener(`option:${option.name()}`, (text?: string | null) => {
    if (cmd.getOptionValueSource(key) !== 'cli') {
      first = text ?? ''; // as written, for the message
      return;
    }
    const flag = option.long ?? option.short ?? option.flags;
    const values = text === undefined || text === null ? ':' : ` (${first}, then ${text}): it takes one value,`;
    throw new ConfigError(`${flag} is given more than once${values} give it once`);
  });
}

/**
 * The typed values of `set` from a command's parsed options: flags not given are false, every other key as
 * commander parsed it (already checked by toOption's parser).
 */
export function optionValues<S extends OptionSet>(set: S, parsed: Record<string, unknown>): OptionValues<S> {
  const out: Record<string, unknown> = {};
  for (const [key, d] of Object.entries(set)) out[key] = parsed[key] ?? d.default;
  return out as OptionValues<S>;
}

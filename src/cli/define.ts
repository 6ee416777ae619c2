/** A commander command whose options come from an option set, and the typed values its action receives. */
import { Command } from 'commander';
import { addOptions, optionValues } from '../options/commander.js';
import type { OptionSet, OptionValues } from '../options/declare.js';

export interface CommandSpec<S extends OptionSet> {
  name: string;
  description: string;
  /** Positional arguments: `['<store>', 'what it is']`. */
  args?: Array<[string, string]>;
  options: S;
  /** Runs the command with its positional arguments and typed options. */
  // commander hands positional arguments as declared in `args` (a string, a variadic string[], or undefined when
  // optional); each command's run states which.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  run: (args: any[], options: OptionValues<S>) => Promise<unknown>;
}

export function defineCommand<S extends OptionSet>(spec: CommandSpec<S>): Command {
  const cmd = new Command(spec.name).description(spec.description);
  for (const [name, description] of spec.args ?? []) cmd.argument(name, description);
  addOptions(cmd, spec.options);
  return cmd.action(async (...params: unknown[]) => {
    const command = params.at(-1) as Command;
    await spec.run(params.slice(0, spec.args?.length ?? 0), optionValues(spec.options, command.opts()));
  });
}

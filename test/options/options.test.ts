/**
 * Option declarations: one declaration gives the flag, the pipeline key and the type. The contract tests walk
 * the real commander program, so a flag added to a command without a pipeline key (or a pipeline key no
 * command has) fails here.
 */
import { checkRetryOptions } from '../../src/jobs/ingest.js';
import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { buildProgram, main } from '../../src/cli.js';
import { ConfigError } from '../../src/errors.js';
import { addOptions, optionValues } from '../../src/options/commander.js';
import {
  choice,
  flag,
  FLAG_NAMES,
  int,
  list,
  negatable,
  num,
  pipelineNames,
  snake,
  text,
  words,
  type AnyDecl,
} from '../../src/options/declare.js';
import { describeIssue, keysAt, nearestKey, stageSchema } from '../../src/options/pipeline.js';
import { PipelineSchema, STAGE_COMMANDS, validatePipeline } from '../../src/pipeline/schema.js';

/** Commands no pipeline stage runs, each with why; any other command must be a stage of STAGE_COMMANDS. */
const NOT_STAGES: Record<string, string> = {
  run: 'runs a pipeline itself',
  worker: 'a separate process serving ingest.queue',
  inspect: 'reads a dataset, makes nothing',
  'augment preview': 'the report stage renders the preview from the train settings',
  plot: 'the report stage draws the curves of train.out',
  'eval knn': 'the report stage runs k-NN (report.knn) on the exported backbones',
};

/** Pipeline keys that are no flag of the stage's command: positional arguments and pipeline structure. */
const PIPELINE_ONLY: Record<string, string[]> = {
  ingest: ['lists'],
  crawl: ['seeds'],
  export: ['baseline'],
  train: [],
  embed: [],
};

function leaves(cmd: Command, prefix: string[] = []): Array<{ path: string; cmd: Command }> {
  return cmd.commands.flatMap((c) =>
    c.commands.length ? leaves(c, [...prefix, c.name()]) : [{ path: [...prefix, c.name()].join(' '), cmd: c }],
  );
}

describe('every CLI option is settable from a pipeline', () => {
  const program = buildProgram();
  const commands = leaves(program);
  const stages = Object.entries(STAGE_COMMANDS);

  it('every command is a pipeline stage or listed as not one', () => {
    for (const { path } of commands) {
      const isStage = stages.some(([, s]) => s.command === path);
      expect(
        isStage || path in NOT_STAGES,
        `command "${path}": map it to a pipeline stage in STAGE_COMMANDS, or list it in NOT_STAGES`,
      ).toBe(true);
    }
  });

  it.each(stages)(
    'stage %s: each flag of its command is a pipeline key, and the other way round',
    (stage, { command, options }) => {
      const cmd = commands.find((c) => c.path === command)!.cmd;
      const flags = cmd.options.map((o) => o.attributeName()).filter((name) => name !== 'help');
      expect(flags.sort()).toEqual(Object.keys(options).sort()); // the command's flags are exactly its declarations
      const keys = keysAt(PipelineSchema, [stage]);
      for (const name of flags)
        expect(keys, `${command} --${cmd.options.find((o) => o.attributeName() === name)!.long}`).toContain(
          snake(name),
        );
      for (const key of keys) expect([...flags.map(snake), ...PIPELINE_ONLY[stage]!], `${stage}.${key}`).toContain(key);
    },
  );

  it('a pipeline value and the same flag parse to the same typed options', async () => {
    const flags = [
      '--unit-size',
      '7',
      '--format',
      'webp',
      '--url-col',
      'URL',
      '--allow-address',
      '127.0.0.1',
      '10.0.0.0/8',
      '--append',
      '--retry-reasons',
      'timeout,http_5xx',
    ];
    let fromCli: unknown;
    const probe = new Command('ingest').argument('<lists...>').exitOverride();
    addOptions(probe, STAGE_COMMANDS.ingest.options).action((_lists, _opts, c: Command) => {
      fromCli = optionValues(STAGE_COMMANDS.ingest.options, c.opts());
    });
    await probe.parseAsync(['a.txt', '--out', 'o', ...flags], { from: 'user' });
    const p = validatePipeline(
      {
        ingest: {
          lists: ['a.txt'],
          out: 'o',
          unit_size: 7,
          format: 'webp',
          url_col: 'URL',
          allow_address: ['127.0.0.1', '10.0.0.0/8'],
          append: true,
          retry_reasons: ['timeout', 'http_5xx'],
        },
      },
      'p.yaml',
    );
    const { lists, ...fromPipeline } = p.ingest!;
    expect(lists).toEqual(['a.txt']);
    expect(fromPipeline).toEqual(fromCli);
    expect(fromCli).toMatchObject({
      unitSize: 7,
      concurrency: 64,
      append: true,
      allowPrivateNetwork: false,
      retryReasons: ['timeout', 'http_5xx'],
    });
  });
});

describe('unknown pipeline keys', () => {
  it('name the nearest known key', () => {
    expect(() => validatePipeline({ ingest: { lists: ['a'], out: 'x', unit_sise: 5 } }, 'p.yaml')).toThrow(
      'p.yaml: ingest.unit_sise: unknown key (did you mean unit_size?)',
    );
    expect(() => validatePipeline({ trian: { out: 'y' } }, 'p.yaml')).toThrow(
      'p.yaml: trian: unknown key (did you mean train?)',
    );
    expect(() => validatePipeline({ crawl: { seeds: ['http://a/'], out: 'x', maxPages: 3 } }, 'p.yaml')).toThrow(
      /crawl\.maxPages: unknown key \(did you mean max_pages\?\)/,
    );
    expect(() => validatePipeline({ report: { out: 'r', knn: { train: 'a', test: 'b', kk: 3 } } }, 'p.yaml')).toThrow(
      /report\.knn\.kk: unknown key \(did you mean k\?\)/,
    );
  });

  it('suggest nothing when no key is close enough to be a typo', () => {
    expect(nearestKey('checkpoint_interval', ['checkpoint_every', 'log_every'])).toBe('checkpoint_every');
    expect(nearestKey('colour', ['checkpoint_every', 'log_every', 'crops'])).toBeUndefined();
    expect(() => validatePipeline({ train: { out: 'y', data: 'd', colour: 1 } }, 'p.yaml')).toThrow(
      /^p\.yaml: train\.colour: unknown key$/,
    );
  });
});

describe('declarations', () => {
  const set = {
    out: text({ required: true, minLength: 1, description: 'where' }),
    size: int({ min: 1, max: 10, default: 4, description: 'how big' }),
    kind: choice(['a', 'b'], { default: 'a', description: 'which' }),
    tag: text({ description: 'optional tag', check: (s) => s.toLowerCase() }),
    hosts: words({ description: 'comma-separated' }),
    allow: list({ description: 'several' }),
    force: flag({ description: 'force' }),
    resume: negatable({ description: 'start over' }),
  } as const;

  const parse = async (args: string[]) => {
    let got: unknown;
    const cmd = addOptions(new Command('x').exitOverride().configureOutput({ writeErr: () => {} }), set).action(
      (_o, c: Command) => {
        got = optionValues(set, c.opts());
      },
    );
    await cmd.parseAsync(args, { from: 'user' });
    return got;
  };

  it('give kebab-case flags with defaults, and typed values', async () => {
    expect(await parse(['--out', 'o'])).toEqual({
      out: 'o',
      size: 4,
      kind: 'a',
      tag: undefined,
      hosts: undefined,
      allow: undefined,
      force: false,
      resume: true,
    });
    expect(
      await parse([
        '--out',
        'o',
        '--size',
        '9',
        '--tag',
        'AB',
        '--hosts',
        'a, b',
        '--allow',
        'x',
        'y',
        '--force',
        '--no-resume',
      ]),
    ).toEqual({
      out: 'o',
      size: 9,
      kind: 'a',
      tag: 'ab',
      hosts: ['a', 'b'],
      allow: ['x', 'y'],
      force: true,
      resume: false,
    });
  });

  it('refuse bad flag values as usage errors, naming what was expected', async () => {
    await expect(parse(['--out', 'o', '--size', '11'])).rejects.toThrow(/expected an integer from 1 to 10, got "11"/);
    await expect(parse(['--out', 'o', '--size', '2.5'])).rejects.toThrow(/expected an integer/);
    const open = { n: int({ min: 1, default: 1, description: 'n' }) };
    const cmd = addOptions(new Command('x').exitOverride().configureOutput({ writeErr: () => {} }), open);
    await expect(cmd.parseAsync(['--n', '0'], { from: 'user' })).rejects.toThrow(/expected an integer >= 1, got "0"/);
    await expect(parse(['--out', 'o', '--kind', 'c'])).rejects.toThrow(/Allowed choices are a, b/);
    await expect(parse([])).rejects.toThrow(/required option '--out <value>' not specified/);
  });

  it('refuse a single-valued option given twice, in every spelling, naming it; a list option repeats', async () => {
    const refused = (flag: string, values = '') =>
      new RegExp(
        `^${flag} is given more than once${values ? ` \\(${values}\\): it takes one value,` : ':'} give it once$`,
      );
    const twice = async (args: string[]) => {
      const err = await parse(['--out', 'o', ...args]).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, args.join(' ')).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    };
    expect(await twice(['--size', '3', '--size', '4'])).toMatch(refused('--size', '3, then 4'));
    expect(await twice(['--size=3', '--size', '4'])).toMatch(refused('--size', '3, then 4'));
    expect(await twice(['--size', '3', '--size=4'])).toMatch(refused('--size', '3, then 4'));
    expect(await twice(['--kind', 'a', '--kind', 'b'])).toMatch(refused('--kind', 'a, then b'));
    expect(await twice(['--hosts', 'a,b', '--hosts', 'c'])).toMatch(refused('--hosts', 'a,b, then c'));
    expect(await twice(['--force', '--force'])).toMatch(refused('--force'));
    expect(await twice(['--no-resume', '--no-resume'])).toMatch(refused('--no-resume'));
    expect(await parse(['--out', 'o', '--out', 'p']).catch((e: Error) => e.message)).toMatch(
      refused('--out', 'o, then p'),
    );
    // Meant to repeat: a list's values accumulate over its flags.
    expect(await parse(['--out', 'o', '--allow', 'x', 'y', '--allow', 'z'])).toMatchObject({ allow: ['x', 'y', 'z'] });
    // A command parsed again starts afresh (commander restores its state before each parse).
    let size = 0;
    const cmd = addOptions(new Command('x').exitOverride(), set).action((_o, c: Command) => {
      size = optionValues(set, c.opts()).size;
    });
    await cmd.parseAsync(['--out', 'o', '--size', '5'], { from: 'user' });
    await cmd.parseAsync(['--out', 'o', '--size', '6'], { from: 'user' });
    expect(size).toBe(6);
  });

  it('every single-valued option of every command, given twice, exits 2 naming the flag before any work', async () => {
    let stderr = '';
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
    let checked = 0;
    try {
      for (const { path, cmd } of leaves(buildProgram())) {
        for (const option of cmd.options) {
          if (option.variadic) continue;
          const flag = option.long!;
          // A value the option takes (the repeat is refused before a missing argument or required option).
          const takes = (v: string) => {
            try {
              option.parseArg?.(v, undefined);
              return true;
            } catch {
              return false;
            }
          };
          const value = [...(option.argChoices ?? []), `${option.defaultValue}`, '1', '16', 'x'].find(takes)!;
          expect(value, `${path} ${flag}: a value it takes`).toBeDefined();
          const once = option.required ? [flag, value] : [flag];
          stderr = '';
          const code = await main(['node', 'wildstream', ...path.split(' '), ...once, ...once]);
          expect([code, stderr.split('\n')[0]], `${path} ${flag}`).toEqual([
            2,
            `wildstream: ${flag} is given more than once${option.required ? ` (${value}, then ${value}): it takes one value,` : ':'} give it once`,
          ]);
          checked++;
        }
      }
    } finally {
      spy.mockRestore();
    }
    expect(checked).toBeGreaterThan(60);
  });

  it('exit 0 for help asked for, 2 for a missing command or subcommand (help shown on stderr)', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const cli = (...args: string[]) => main(['node', 'wildstream', ...args]);
    try {
      expect(await cli('eval')).toBe(2);
      expect(await cli('augment')).toBe(2);
      expect(await cli()).toBe(2);
      expect(await cli('eval', '--help')).toBe(0);
      expect(await cli('help', 'eval')).toBe(0);
      expect(await cli('--version')).toBe(0);
    } finally {
      err.mockRestore();
      out.mockRestore();
    }
  });

  it('show their bounds, choices and default in --help, in one parenthesis', () => {
    const help = (o: Record<string, AnyDecl>) => addOptions(new Command('x'), o).helpInformation().replace(/\s+/g, ' ');
    expect(help(set)).toContain('--size <n> how big (integer 1 to 10, default: 4)');
    expect(help(set)).toContain('--kind <value> which (choices: "a", "b", default: "a")');
    expect(help(set)).toContain('--out <value> where --size');
    const chosen = { rate: num({ min: 0, description: 'rate', defaultText: 'chosen at run time' }) };
    expect(help(chosen)).toContain('--rate <x> rate (number >= 0, default: chosen at run time)');
    const bounded = { rate: num({ min: 0, max: 1, default: 0.5, description: 'rate' }) };
    expect(help(bounded)).toContain('--rate <x> rate (number 0 to 1, default: 0.5)');
  });

  it('every bounded option of every command shows its bounds in --help', () => {
    let checked = 0;
    for (const { path, cmd } of leaves(buildProgram())) {
      const text = cmd.helpInformation().replace(/\s+/g, ' ');
      // Each option's help runs from its flags to the next option's.
      const starts = [...cmd.options.map((o) => text.indexOf(`${o.flags} `)), text.indexOf(' -h, --help')];
      cmd.options.forEach((option, i) => {
        if (!/<[nx]>$/.test(option.flags)) return;
        expect(text.slice(starts[i], starts[i + 1]), `${path} ${option.flags}`).toMatch(
          /\((?:integer|number) (?:>= \S+|\S+ to \S+)[,)]/,
        );
        checked++;
      });
    }
    expect(checked).toBeGreaterThan(20);
  });

  it('are named as the person set them: flags for a command, stage keys for a pipeline', () => {
    expect([FLAG_NAMES.of('logEvery'), FLAG_NAMES.set('steps', 20)]).toEqual(['--log-every', '--steps 20']);
    expect([FLAG_NAMES.set('resume', false), FLAG_NAMES.set('larsAll', true)]).toEqual(['--no-resume', '--lars-all']);
    const train = pipelineNames('train');
    expect([train.of('logEvery'), train.set('steps', 20), train.set('resume', false)]).toEqual([
      'train.log_every',
      'train.steps=20',
      'train.resume=false',
    ]);
  });

  it("name ingest's refused retry combinations as the person set them", () => {
    expect(() => checkRetryOptions({ queue: 'redis://127.0.0.1:6379/15', retryFailed: true })).toThrow(
      /^--retry-failed runs here, not on a queue: drop --queue$/,
    );
    expect(() => checkRetryOptions({ retryReasons: ['http_404'] }, pipelineNames('ingest'))).toThrow(
      /^ingest\.retry_reasons needs ingest\.retry_failed=true$/,
    );
    expect(() => checkRetryOptions({ retryFailed: true, retryReasons: ['http_404'] })).not.toThrow();
  });

  it('give snake_case pipeline keys checked by the same bounds, defaults filled in', () => {
    const schema = stageSchema(set);
    expect(schema.parse({ out: 'o', size: 9, tag: 'AB', hosts: 'a,b', allow: 'x' })).toEqual({
      out: 'o',
      size: 9,
      kind: 'a',
      tag: 'ab',
      hosts: ['a', 'b'],
      allow: ['x'],
      force: false,
      resume: true,
    });
    expect(schema.safeParse({ out: 'o', size: 11 }).success).toBe(false);
    expect(schema.safeParse({ out: 'o', kind: 'c' }).success).toBe(false);
    expect(schema.safeParse({ size: 3 }).success).toBe(false);
    expect(keysAt(schema, [])).toEqual(['out', 'size', 'kind', 'tag', 'hosts', 'allow', 'force', 'resume']);
  });

  it('check each word where a words option declares a check, refusing the same word from a flag and a pipeline', async () => {
    const upper = (w: string) => {
      if (/\d/.test(w)) throw new Error(`no digits, got "${w}"`);
      return w.toUpperCase();
    };
    const checked = { tags: words({ description: 'tags', check: upper }) };
    const cmd = () => addOptions(new Command('x').exitOverride().configureOutput({ writeErr: () => {} }), checked);
    await expect(cmd().parseAsync(['--tags', 'a,b2'], { from: 'user' })).rejects.toThrow(/no digits, got "b2"/);
    const schema = stageSchema(checked);
    expect(schema.parse({ tags: ['a', 'b, c'] })).toEqual({ tags: ['A', 'B', 'C'] });
    const bad = schema.safeParse({ tags: 'a,b2' });
    expect(bad.success).toBe(false);
    expect(describeIssue(schema, bad.error!)).toBe('tags: no digits, got "b2"');
  });

  it("take crawl's --hosts as host[:port] only, from a flag and a pipeline key alike", async () => {
    const url = 'http://127.0.0.1:29010';
    const hint =
      /expected host or host:port \(IPv6 in brackets, as \[::1\]:8080\), got "http:\/\/127\.0\.0\.1:29010": write 127\.0\.0\.1:29010 instead$/;
    expect(() => validatePipeline({ crawl: { seeds: [`${url}/`], out: 'x', hosts: url } }, 'p.yaml')).toThrow(
      /^p\.yaml: crawl\.hosts: expected host or host:port/,
    );
    expect(() => validatePipeline({ crawl: { seeds: [`${url}/`], out: 'x', hosts: [url] } }, 'p.yaml')).toThrow(hint);
    const p = validatePipeline({ crawl: { seeds: [`${url}/`], out: 'x', hosts: ['Example.org:8080', '[::1]'] } }, 'p');
    expect(p.crawl!.hosts).toEqual(['example.org:8080', '[::1]']);

    // The command itself: a usage error (exit 2) before any work, its one line naming the flag and the fix.
    let stderr = '';
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
    const code = await main(['node', 'wildstream', 'crawl', `${url}/`, '--out', 'never-made', '--hosts', url]).finally(
      () => spy.mockRestore(),
    );
    expect(code).toBe(2);
    expect(stderr.split('\n')[0]).toMatch(
      /^error: option '--hosts <list>' argument 'http:\/\/127\.0\.0\.1:29010' is invalid\./,
    );
    expect(stderr.split('\n')[0]).toMatch(hint);
    expect(existsSync('never-made')).toBe(false);
  });

  it('check a crop spec and a model name where they are given', () => {
    expect(() => validatePipeline({ train: { out: 'y', data: 'd', crops: '2x224@0.9-0.1' } }, 'p.yaml')).toThrow(
      /train\.crops: .*crop scale/,
    );
    expect(() => validatePipeline({ train: { out: 'y', data: 'd', model: 'regnety_9000mf' } }, 'p.yaml')).toThrow(
      /train\.model: /,
    );
  });
});

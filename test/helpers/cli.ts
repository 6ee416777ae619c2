/**
 * Runs the real CLI (see BIN) in a child process, as the tests and the reliability bench do: start it,
 * collect its output and exit, optionally stop it with a signal once its output (or the clock) says so. Also
 * the flags of the tiny model that every CLI training test trains.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { V8_FLAGS } from '../../src/v8-flags.js';

/**
 * The CLI entry: under vitest, the transpiled copy test/global-setup.ts makes (the same code without tsx's cost
 * per process); elsewhere (the benches) bin/wildstream.js.
 */
export const BIN =
  process.env.WILDSTREAM_TEST_CLI ?? fileURLToPath(new URL('../../bin/wildstream.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** SIGKILL after this long (then `signal` is SIGKILL). @default 120_000 */
  timeoutMs?: number;
  cwd?: string;
  /**
   * Sends `stopSignal` once this holds, checked as output arrives and every 100 ms (so a condition on the clock
   * or on outside state works too). Sent once.
   */
  stopWhen?: (out: { stdout: string; stderr: string }) => boolean;
  /** @default 'SIGTERM' */
  stopSignal?: NodeJS.Signals;
}

export interface StoppedCliResult extends CliResult {
  /** Milliseconds from the stop signal to the exit; NaN when `stopWhen` never held. */
  exitMs: number;
}

/**
 * Starts the CLI with `args` (and the V8 flags bin/ runs with). Its stdout and stderr are piped (the caller
 * must read them), or with `output: 'ignore'` discarded.
 */
export function startCli(
  args: string[],
  o: Pick<CliOptions, 'env' | 'cwd'> & { output?: 'pipe' | 'ignore' } = {},
): ChildProcess {
  const output = o.output ?? 'pipe';
  return spawn(process.execPath, [...V8_FLAGS, BIN, ...args], {
    env: { ...process.env, ...o.env },
    stdio: ['ignore', output, output],
    cwd: o.cwd,
  });
}

/** Runs the CLI with `args` to its exit; see CliOptions for the stop signal and the time limit. */
export function spawnCli(args: string[], o: CliOptions = {}): Promise<StoppedCliResult> {
  return new Promise((resolve, reject) => {
    const child = startCli(args, o);
    const out = { stdout: '', stderr: '' };
    let sentAt = 0;
    const check = () => {
      if (sentAt || !o.stopWhen?.(out)) return;
      sentAt = performance.now();
      child.kill(o.stopSignal ?? 'SIGTERM');
    };
    child.stdout!.on('data', (d) => ((out.stdout += d), check()));
    child.stderr!.on('data', (d) => ((out.stderr += d), check()));
    const poll = o.stopWhen ? setInterval(check, 100) : undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      clearTimeout(timer);
      resolve({ code, signal, ...out, exitMs: sentAt ? performance.now() - sentAt : NaN });
    });
  });
}

/** Runs the CLI with `args` to its exit (SIGKILL after `timeoutMs`). */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
  cwd?: string,
): Promise<CliResult> {
  const { code, signal, stdout, stderr } = await spawnCli(args, { env, timeoutMs, cwd });
  return { code, signal, stdout, stderr };
}

/** Two global crops of 32 px and two local ones of 16 px. */
export const TINY_CROPS = '2x32@0.3-1,2x16@0.1-0.3';

/**
 * `wildstream train` flags for the tiny model the CLI training tests and the reliability bench train: a RegNet
 * of depth 3 and width 16 (custom:3,16,8,2,16), batch 8, 16 prototypes, a 32-wide head of 16 dimensions, on
 * wasm with one augmentation thread. `crops` and `freezePrototypes` (left to auto when absent) as a test needs;
 * `extra` flags follow.
 */
export function tinyTrainArgs(o: { crops?: string; freezePrototypes?: number } = {}, ...extra: string[]): string[] {
  return [
    ...['--model', 'custom:3,16,8,2,16', '--batch', '8', '--crops', o.crops ?? TINY_CROPS],
    ...['--prototypes', '16', '--hidden', '32', '--dim', '16'],
    ...(o.freezePrototypes === undefined ? [] : ['--freeze-prototypes', String(o.freezePrototypes)]),
    ...['--backend', 'wasm', '--threads', '1'],
    ...extra,
  ];
}

/**
 * `wildstream ingest` of URL list `list` into `out` as the CLI reliability tests and bench run it: units of 5
 * URLs, 4 downloads in flight, the local test server's address allowed.
 */
export const ingestArgs = (list: string, out: string): string[] => [
  ...['ingest', list, '--out', out],
  ...['--unit-size', '5', '--concurrency', '4', '--allow-address', '127.0.0.1'],
];

/**
 * Reliability benchmark: kills, storage faults and signals, at full size (test/shards/faults-cli.test.ts and
 * the SIGKILL tests are the CI-sized versions).
 *
 *   npx tsx bench/reliability.ts [--kills 10] [--runs 3] [--rate 0.15] [--train-steps 12] [--seed 1]
 *                                [--only kills,faults,signals]
 *
 * Needs a redis-server on 127.0.0.1:6379 (db 12 and 13 are flushed). Prints one table per section and a JSON
 * summary line: kills survived, faults injected, runs failed (goal 0), data lost (goal 0), slowest exit
 * after SIGTERM (goal under 5 s).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openStore } from '../src/shards/store.js';
import { spawnCli, tinyTrainArgs } from '../test/helpers/cli.js';
import { writeDataset, writePhotoDataset } from '../test/helpers/dataset.js';
import { startFaultProxy } from '../test/helpers/fault-proxy.js';
import { startS3, type S3Fixture } from '../test/helpers/s3-server.js';
import { faultRows } from './reliability-faults.js';
import { killIngest, killTrain, killWorkers, slowImageServer } from './reliability-kills.js';

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    rate: { type: 'string', default: '0.15' },
    'train-steps': { type: 'string', default: '12' },
    seed: { type: 'string', default: '1' },
    only: { type: 'string', default: 'kills,faults,signals' },
  },
});
const only = new Set(values.only!.split(','));
const seed = Number(values.seed);
const TINY = tinyTrainArgs({ crops: '2x32@0.3-1' });

function table(rows: object[]): void {
  if (!rows.length) return;
  const cols = Object.keys(rows[0]!);
  process.stdout.write(`| ${cols.join(' | ')} |\n|${cols.map(() => '---').join('|')}|\n`);
  for (const r of rows)
    process.stdout.write(`| ${cols.map((c) => String((r as Record<string, unknown>)[c])).join(' | ')} |\n`);
}

/**
 * Runs the CLI with `args`, sends SIGTERM after `afterMs`, and returns seconds from the signal to exit
 * (Infinity when it was still running 30 s later and had to be killed).
 */
async function termAfter(
  args: string[],
  afterMs: number,
  env: Record<string, string> = {},
): Promise<{ seconds: number; code: number | null }> {
  const t0 = performance.now();
  const r = await spawnCli(args, {
    env,
    stopWhen: () => performance.now() - t0 >= afterMs,
    timeoutMs: afterMs + 30_000,
  });
  if (r.signal === 'SIGKILL') return { seconds: Infinity, code: null };
  return { seconds: Number.isNaN(r.exitMs) ? 0 : r.exitMs / 1000, code: r.code }; // NaN: it ended before the signal
}

async function signalRows(s3: S3Fixture, work: string): Promise<object[]> {
  const data = join(work, 'sig-data');
  await writePhotoDataset(await openStore(data), { units: 2, perUnit: 16 });
  const empty = join(work, 'sig-empty');
  await writeDataset(await openStore(empty), { units: 1, perUnit: 0 });
  const stall = await startFaultProxy({ upstream: s3.endpoint, rate: 1, kinds: ['stall-headers'] });
  const rows: object[] = [];
  const state = async (name: string, args: string[], afterMs: number, env?: Record<string, string>) => {
    const { seconds, code } = await termAfter(args, afterMs, env);
    rows.push({ state: name, exitCode: code, secondsToExit: seconds.toFixed(2), ok: seconds < 5 });
  };
  try {
    await state(
      'mid-training',
      ['train', '--data', data, '--out', join(work, 'sig-run'), ...TINY, '--steps', '1000'],
      6000,
    );
    await state(
      'empty dataset',
      ['train', '--data', empty, '--out', join(work, 'sig-run-empty'), ...TINY, '--steps', '10'],
      1500,
    );
    await state(
      'stalled GET',
      [
        'train',
        '--data',
        's3://rel/clean',
        '--out',
        join(work, 'sig-run-stall'),
        ...TINY,
        '--steps',
        '10',
        '--s3-endpoint',
        stall.endpoint,
      ],
      3000,
      s3.env,
    );
    await state(
      'blocked read (follow, no data yet)',
      [
        'train',
        '--data',
        join(work, 'sig-nothing'),
        '--out',
        join(work, 'sig-run-follow'),
        ...TINY,
        '--steps',
        '10',
        '--follow',
      ],
      3000,
    );
  } finally {
    await stall.stop();
  }
  return rows;
}

const work = await mkdtemp(join(tmpdir(), 'ws-reliability-'));
const s3 = await startS3(['rel']);
Object.assign(process.env, s3.env); // this process reads the results back from s3rver too
const images = await slowImageServer(40);
const summary: Record<string, number> = {};
try {
  if (only.has('kills')) {
    const kills = Number(values.kills);
    const rows = [
      await killIngest(work, images.base, kills, seed),
      await killWorkers(work, images.base, kills, seed + 1),
      await killTrain(work, kills, seed + 2, Number(values['train-steps']) * 2),
    ];
    table(rows);
    Object.assign(summary, {
      kills: rows.reduce((a, r) => a + r.kills, 0),
      killsLanded: rows.reduce((a, r) => a + r.landed, 0),
      killRunsFailed: rows.reduce((a, r) => a + r.failedRuns, 0),
      killDataLost: rows.reduce((a, r) => a + r.lost, 0),
    });
  }
  if (only.has('faults') || only.has('signals')) {
    const list = join(work, 'fault-urls.txt');
    await writeFile(list, Array.from({ length: 40 }, (_, i) => `${images.base}/${i}.jpg`).join('\n'));
    const rows = await faultRows(
      s3,
      work,
      list,
      only.has('faults') ? Number(values.runs) : 0,
      Number(values.rate),
      Number(values['train-steps']),
    );
    if (only.has('faults')) {
      table(rows);
      Object.assign(summary, {
        faultRuns: rows.reduce((a, r) => a + r.runs, 0),
        faultsInjected: rows.reduce((a, r) => a + r.faults, 0),
        faultRunsFailed: rows.reduce((a, r) => a + r.failedRuns, 0),
        faultDataLost: rows.reduce((a, r) => a + r.lost, 0),
      });
    }
  }
  if (only.has('signals')) {
    const rows = await signalRows(s3, work);
    table(rows);
    summary.slowestExitAfterSigterm = Math.max(
      ...rows.map((r) => Number((r as { secondsToExit: string }).secondsToExit)),
    );
  }
  process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), ...summary })}\n`);
} finally {
  images.close();
  await s3.stop();
  await rm(work, { recursive: true, force: true });
}

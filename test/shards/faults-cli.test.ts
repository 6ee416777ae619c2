// The CLI against an S3 server behind a proxy that fails 15 % of the requests (500, 503 SlowDown, resets
// mid-body, truncated bodies, stalls, latency): ingest, a rerun of it, inspect, train, export and embed all
// succeed, and what they write equals a fault-free run's: the same keys, no duplicates, the same weights.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listUnits } from '../../src/shards/dataset.js';
import { ShardReader } from '../../src/shards/reader.js';
import { openStore } from '../../src/shards/store.js';
import { listCheckpoints, loadCheckpoint } from '../../src/train/checkpoint.js';
import { ingestArgs, runCli, tinyTrainArgs, type CliResult } from '../helpers/cli.js';
import { FAULT_KINDS, startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';
import { startS3, type S3Fixture } from '../helpers/s3-server.js';

let s3: S3Fixture;
let proxy: FaultProxy;
let fixture: Fixture;
let dir: string;
let list: string;

beforeAll(async () => {
  [s3, fixture] = await Promise.all([startS3(['wsb']), startFixture()]);
  proxy = await startFaultProxy({ upstream: s3.endpoint, rate: 0.15, seed: 2024, pick: 'cycle' });
  Object.assign(process.env, s3.env);
  dir = await mkdtemp(join(tmpdir(), 'ws-faults-cli-'));
  list = join(dir, 'list.txt');
  await writeFile(list, Array.from({ length: 20 }, (_, i) => `${fixture.base}/img/${i + 100}.jpg`).join('\n'));
});
afterAll(async () => {
  await proxy?.stop();
  await Promise.all([s3?.stop(), fixture?.close()]);
  await rm(dir, { recursive: true, force: true });
});

/** Runs the CLI against the clean server or through the faulty proxy (with a 1 s idle timeout). */
async function cli(faulty: boolean, args: string[]): Promise<CliResult> {
  const store = faulty
    ? ['--s3-endpoint', proxy.endpoint, '--store-idle-timeout', '1']
    : ['--s3-endpoint', s3.endpoint];
  const started = Date.now();
  const result = await runCli([...args, ...store], s3.env, 120_000);
  if (process.env.WS_FAULTS_VERBOSE)
    process.stdout.write(
      `${args[0]} ${faulty ? 'faulty' : 'clean'}: ${Date.now() - started} ms, ${proxy.stats.requests} requests so far\n`,
    );
  expect(result.code, `${args[0]} ${faulty ? 'with faults' : 'clean'}: ${result.stderr}`).toBe(0);
  return result;
}

const direct = (url: string) => openStore(url, { s3Endpoint: s3.endpoint });

/** Every record key of a dataset, in unit order, read fault-free. */
async function keysOf(url: string): Promise<string[]> {
  const store = await direct(url);
  const keys: string[] = [];
  for (const unit of await listUnits(store)) {
    for await (const r of (await ShardReader.open(store, unit.shard, { size: unit.bytes })).records()) keys.push(r.key);
  }
  return keys;
}

async function finalWeights(url: string): Promise<{ step: number; values: Map<string, Float32Array> }> {
  const store = await direct(url);
  const [latest] = await listCheckpoints(store);
  const ckpt = await loadCheckpoint(store, latest!.key);
  return { step: ckpt.header.step, values: ckpt.values };
}

const TINY = tinyTrainArgs({ freezePrototypes: 1 }, '--steps', '4', '--checkpoint-every', '2');

describe('the CLI through a store that fails 15 % of its requests', () => {
  it('ingest, rerun and inspect: the dataset of a fault-free run, nothing lost or duplicated', async () => {
    const ingest = (out: string) => ingestArgs(list, out);
    await cli(false, ingest('s3://wsb/clean'));
    const before = proxy.stats.requests;
    await cli(true, ingest('s3://wsb/faulty'));
    await cli(true, ingest('s3://wsb/faulty')); // a rerun resumes: it reads the manifest and the unit records
    expect(proxy.stats.requests).toBeGreaterThan(before);
    const [clean, faulty] = [await keysOf('s3://wsb/clean'), await keysOf('s3://wsb/faulty')];
    expect(clean).toHaveLength(20);
    expect(new Set(faulty).size).toBe(faulty.length);
    // The faulty store's retries and the resumed run write exactly the clean run's keys.
    expect(faulty.sort()).toEqual(clean.sort());

    const summary = async (faulty: boolean, url: string) => {
      const out = JSON.parse((await cli(faulty, ['inspect', url, '--json'])).stdout) as Record<string, unknown>;
      return { ...out, url: undefined, store: undefined, root: undefined };
    };
    expect(await summary(true, 's3://wsb/faulty')).toEqual(await summary(false, 's3://wsb/clean'));
  }, 300_000);

  it('train, export and embed: the weights and embeddings of a fault-free run', async () => {
    await cli(false, ['train', '--data', 's3://wsb/clean', '--out', 's3://wsb/run-clean', ...TINY]);
    // The same dataset both times: the two ingests hold the same rows, not necessarily in the same order.
    await cli(true, ['train', '--data', 's3://wsb/clean', '--out', 's3://wsb/run-faulty', ...TINY]);
    const [clean, faulty] = [await finalWeights('s3://wsb/run-clean'), await finalWeights('s3://wsb/run-faulty')];
    expect(faulty.step).toBe(4);
    expect([...faulty.values.keys()].sort()).toEqual([...clean.values.keys()].sort());
    for (const [name, values] of clean.values) expect(faulty.values.get(name), name).toEqual(values);

    await cli(false, ['export', 's3://wsb/run-clean', '--out', 's3://wsb/model-clean']);
    await cli(true, ['export', 's3://wsb/run-faulty', '--out', 's3://wsb/model-faulty']);
    const embed = async (faulty: boolean, name: string) => {
      const out = join(dir, `${name}.arrow`);
      await cli(faulty, [
        'embed',
        's3://wsb/clean',
        '--model',
        `s3://wsb/model-${name}`,
        '--out',
        out,
        '--backend',
        'wasm',
      ]);
      return readFile(out);
    };
    const [a, b] = [await embed(false, 'clean'), await embed(true, 'faulty')];
    expect(b.equals(a)).toBe(true);
  }, 300_000);

  it('met every kind of fault on the way', () => {
    const met = new Set(Object.keys(proxy.stats.injected).map((k) => (k.startsWith('stall') ? 'stall' : k)));
    expect(met).toEqual(new Set(FAULT_KINDS));
    const injected = Object.values(proxy.stats.injected).reduce((x, y) => x + y, 0);
    expect(injected / proxy.stats.requests).toBeGreaterThan(0.08);
    process.stdout.write(
      `faults-cli: ${proxy.stats.requests} requests through the proxy, ${injected} faults ${JSON.stringify(proxy.stats.injected)}\n`,
    );
  });
});

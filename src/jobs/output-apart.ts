/**
 * The one check every command's output goes through before any work (export, plot, embed, augment preview,
 * train), and every stage of a pipeline before its first stage runs (pipeline/apart.ts): that writing it
 * overwrites none of the command's inputs. `embed --out <dataset>/shards/000000.arrow` wrote over the shard it
 * had just read, and `plot --out <run>/metrics/...` over a metrics file.
 */
import { realpath } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import { ConfigError } from '../errors.js';
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import { localRoot, parseS3Url } from '../shards/store.js';

/** A place a command reads: its location and what it is, for the refusal (`the model folder`). */
export interface InputPlace {
  location: string;
  what: string;
}

/** A command's output: its option's key (`out`), the location, and whether it is a folder (else one file). */
export interface OutputPlace {
  key: string;
  location: string;
  folder: boolean;
}

/**
 * Refuses an output that would overwrite what its command reads, before any work: the output is one of the
 * inputs, lies inside one (a dataset, a model folder, a run), or, for a folder output, holds one. Local places
 * are compared as absolute paths through their symbolic links (as far as they exist), S3 ones by bucket and key
 * prefix. Throws a one-line ConfigError naming the option (as `names` words it), the output and the input; and
 * the ConfigError openStore gives for a malformed file: or s3: URL.
 */
export async function checkOutputApart(
  command: string,
  out: OutputPlace,
  inputs: InputPlace[],
  names: OptionNames = FLAG_NAMES,
): Promise<void> {
  for (const input of inputs) {
    const relation = await placeRelation(out.location, input.location);
    // Only a folder output writes below its own name, so only a folder output can overwrite an input it holds.
    if (relation === undefined || (relation === 'holds' && !out.folder)) continue;
    const option = names.of(out.key);
    throw new ConfigError(
      `${option} ${out.location} ${relation} ${input.what} ${input.location}, which ${command} reads, and ` +
        `writing there could overwrite it; give ${option} a place outside it`,
    );
  }
}

/** How one place stands to another: it `is` the other, `lies inside` it, `holds` it, or is apart (undefined). */
export type PlaceRelation = 'is' | 'lies inside' | 'holds' | undefined;

/**
 * How location `a` stands to location `b`, compared as checkOutputApart compares them: local places as
 * absolute paths through their symbolic links (as far as they exist), S3 ones by bucket and key prefix. Throws
 * the ConfigError openStore gives for a malformed file: or s3: URL.
 */
export async function placeRelation(a: string, b: string): Promise<PlaceRelation> {
  const [first, second] = [await placeOf(a), await placeOf(b)];
  if (within(first, second)) return first.length === second.length ? 'is' : 'lies inside';
  return within(second, first) ? 'holds' : undefined;
}

/**
 * A location as the names from its root: `['s3://bucket', ...key prefix]`, or `['file://', ...path]` with the
 * path made absolute and its existing part resolved through links; another scheme is one opaque name, as
 * openStore refuses it.
 */
async function placeOf(location: string): Promise<string[]> {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location)?.[1]?.toLowerCase();
  if (scheme === 's3') {
    const { bucket, prefix } = parseS3Url(location);
    return [`s3://${bucket}`, ...prefix.split('/').filter(Boolean)];
  }
  if (scheme !== undefined && scheme !== 'file') return [location];
  return ['file://', ...(await realPath(localRoot(location))).split(sep).filter(Boolean)];
}

/** `path` through its symbolic links as far as it exists (an output need not exist yet), the rest as given. */
async function realPath(path: string): Promise<string> {
  const rest: string[] = [];
  for (let at = path; ; at = dirname(at)) {
    const real = await realpath(at).catch(() => undefined);
    if (real !== undefined) return join(real, ...rest);
    if (dirname(at) === at) return path;
    rest.unshift(basename(at));
  }
}

/** Whether place `a` is `b` or lies inside it. */
const within = (a: string[], b: string[]) => a.length >= b.length && b.every((name, i) => a[i] === name);

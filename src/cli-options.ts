/** Option helpers every command shares: store options and validated numbers (bad values exit 2). */
import { Command, InvalidArgumentError } from 'commander';
import type { StoreOptions } from './shards/store.js';

/** Adds the options every command that opens a store shares. */
export function withStoreOptions(cmd: Command): Command {
  return cmd
    .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL)')
    .option('--s3-path-style', 'path-style S3 addressing (default: on when an endpoint is set)')
    .option('--s3-region <region>', 'S3 region (default: AWS_REGION or us-east-1)')
    .option('--store-attempts <n>', 'attempts per storage request, retries with backoff (default: AWS_MAX_ATTEMPTS or 8)', intArg(1, 100))
    .option('--store-idle-timeout <seconds>', 'a storage request waiting this long for a byte is retried (default: 30)', numArg(0.05, 3600));
}

export function storeOptions(opts: {
  s3Endpoint?: string;
  s3PathStyle?: boolean;
  s3Region?: string;
  storeAttempts?: number;
  storeIdleTimeout?: number;
}): StoreOptions {
  return {
    s3Endpoint: opts.s3Endpoint,
    s3PathStyle: opts.s3PathStyle,
    s3Region: opts.s3Region,
    maxAttempts: opts.storeAttempts,
    requestTimeoutMs: opts.storeIdleTimeout === undefined ? undefined : Math.round(opts.storeIdleTimeout * 1000),
  };
}

/** A commander argument parser for integers in [min, max]; bad values are usage errors (exit 2). */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

/** A commander argument parser for finite numbers in [min, max]. */
export function numArg(min: number, max = Number.MAX_VALUE) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a number from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

/** The options of every command that opens a store (`--s3-endpoint`, ...; `s3_endpoint:` in a pipeline stage). */
import { int, maybeFlag, num, text, type OptionValues } from '../options/declare.js';
import type { StoreOptions } from './store-contract.js';

export const STORE_OPTIONS = {
  s3Endpoint: text({
    description: 'S3-compatible endpoint',
    placeholder: 'url',
    defaultText: 'AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL',
  }),
  s3PathStyle: maybeFlag({ description: 'path-style S3 addressing', defaultText: 'on when an endpoint is set' }),
  s3Region: text({ description: 'S3 region', placeholder: 'region', defaultText: 'AWS_REGION or us-east-1' }),
  storeAttempts: int({
    min: 1,
    max: 100,
    description: 'attempts per storage request, retries with backoff',
    defaultText: 'AWS_MAX_ATTEMPTS or 8',
  }),
  storeIdleTimeout: num({
    min: 0.05,
    max: 3600,
    placeholder: 'seconds',
    description: 'a storage request waiting this long for a byte is retried',
    defaultText: '30',
  }),
} as const;

export type StoreOptionValues = OptionValues<typeof STORE_OPTIONS>;

/** The StoreOptions of parsed store options. */
export function storeOptionsOf(o: Partial<StoreOptionValues>): StoreOptions {
  return {
    s3Endpoint: o.s3Endpoint,
    s3PathStyle: o.s3PathStyle,
    s3Region: o.s3Region,
    maxAttempts: o.storeAttempts,
    requestTimeoutMs: o.storeIdleTimeout === undefined ? undefined : Math.round(o.storeIdleTimeout * 1000),
  };
}

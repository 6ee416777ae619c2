/** An option present but `undefined` means "the default" in ingest's Fetcher, as if the key were absent. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fetcher, type FetcherOptions } from '../../src/ingest/fetch.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';

let fixture: Fixture;
beforeAll(async () => {
  fixture = await startFixture();
});
afterAll(() => fixture.close());

describe('explicit undefined options take the defaults', () => {
  it('Fetcher', async () => {
    const unset: FetcherOptions = {
      connectionsPerOrigin: undefined,
      connectTimeoutMs: undefined,
      headersTimeoutMs: undefined,
      bodyTimeoutMs: undefined,
      totalTimeoutMs: undefined,
      maxBytes: undefined,
      byteBudget: undefined,
      maxRedirects: undefined,
      retries: undefined,
      retryBaseMs: undefined,
      maxRetryDelayMs: undefined,
      userAgent: undefined,
      allowPrivateNetwork: undefined,
      truncate: undefined,
      gate: undefined,
    };
    const fetcher = new Fetcher({ ...unset, allowAddresses: ['127.0.0.1'] });
    try {
      const outcome = await fetcher.fetch(`${fixture.base}/photo.jpg`);
      expect(outcome.ok ? outcome.bytes.length : outcome.reason).toBeGreaterThan(1000);
    } finally {
      await fetcher.close();
    }
  });
});

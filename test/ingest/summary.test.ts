import { describe, expect, it } from 'vitest';
import { interruptedError, plural, urlCount } from '../../src/ingest/summary.js';

describe('counts in messages', () => {
  it('use the singular for exactly one', () => {
    expect([0, 1, 2].map((n) => plural(n, 'unit'))).toEqual(['0 units', '1 unit', '2 units']);
    expect(urlCount(1)).toBe('1 URL');
    expect(interruptedError('SIGINT', 0, 1).message).toBe(
      'stopped by SIGINT: 0 of 1 unit committed; rerun the same command to resume',
    );
    expect(interruptedError('SIGTERM', 2, 3).message).toMatch(/: 2 of 3 units committed;/);
  });
});

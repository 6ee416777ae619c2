import { describe, expect, it } from 'vitest';
import { hintFor, interruptedError, plural, urlCount } from '../../src/ingest/summary.js';

describe('counts in messages', () => {
  it('use the singular for exactly one', () => {
    expect([0, 1, 2].map((n) => plural(n, 'unit'))).toEqual(['0 units', '1 unit', '2 units']);
    expect(urlCount(1)).toBe('1 URL');
    expect(interruptedError('SIGINT', 0, 1).message).toBe(
      'stopped by SIGINT: 0 of 1 unit committed; rerun the same command to resume',
    );
    expect(interruptedError('SIGTERM', 2, 3).message).toMatch(/: 2 of 3 units committed;/);
  });

  it('name what stopped a run, and exit as that signal does', () => {
    expect(
      [130, 143, 129].map((code, i) => interruptedError(['SIGINT', 'SIGTERM', 'SIGHUP'][i], 0, 1).exitCode),
    ).toEqual([130, 143, 129]);
    const timeout = interruptedError(new DOMException('The operation timed out.', 'TimeoutError'), 1, 2);
    expect([timeout.message, timeout.exitCode]).toEqual([
      'stopped (The operation timed out.): 1 of 2 units committed; rerun the same command to resume',
      130,
    ]);
  });
});

describe('hintFor', () => {
  it('tells a decode over the memory budget from an image over the pixel limit, and names the fix', () => {
    expect(hintFor('decode_memory').text).toMatch(/512 MiB decode memory budget: a smaller --max-side decodes them/);
    expect(hintFor('too_many_pixels').text).toMatch(/more than 100 million pixels/);
  });
});

import { describe, expect, it } from 'vitest';
import { defined } from '../src/defaults.js';

describe('defined', () => {
  it('drops undefined-valued keys, keeps every other value (null, 0, false, empty string) and copies', () => {
    const options: Record<string, unknown> = { a: undefined, b: null, c: 0, d: false, e: '', f: [1] };
    const out = defined(options);
    expect(out).toEqual({ b: null, c: 0, d: false, e: '', f: [1] });
    expect(Object.keys(out)).not.toContain('a');
    expect(out).not.toBe(options);
    expect({ a: 1, c: 2, ...defined(options) }).toEqual({ a: 1, b: null, c: 0, d: false, e: '', f: [1] });
  });
});

import { describe, expect, it } from 'vitest';
import { largestCandidate, parseSrcset } from '../../src/crawl/srcset.js';

const urls = (s: string) => parseSrcset(s).candidates.map((c) => c.url);
const largest = (s: string) => largestCandidate(parseSrcset(s).candidates)?.url ?? null;

describe('parseSrcset (WHATWG "parse a srcset attribute")', () => {
  it('splits after a URL at a comma with or without a space', () => {
    expect(parseSrcset('a.jpg 1x,b.jpg 4x').candidates).toEqual([
      { url: 'a.jpg', density: 1 },
      { url: 'b.jpg', density: 4 },
    ]);
    expect(parseSrcset('a.jpg 100w,b.jpg 400w , c.jpg').candidates).toEqual([
      { url: 'a.jpg', width: 100 },
      { url: 'b.jpg', width: 400 },
      { url: 'c.jpg' },
    ]);
    expect(urls('a.jpg,b.jpg')).toEqual(['a.jpg,b.jpg']); // no whitespace: one URL with a comma, as browsers read it
    expect(urls('a.jpg, b.jpg')).toEqual(['a.jpg', 'b.jpg']); // a URL ending in commas loses them
    expect(urls(' \t\n,, a.jpg,,, b.jpg 2x ,')).toEqual(['a.jpg', 'b.jpg']);
    expect(urls('')).toEqual([]);
    expect(urls(' , ,')).toEqual([]);
  });

  it('keeps commas inside URLs (data: URLs, CDN transforms)', () => {
    const cdn =
      'https://cdn.example/image/upload/w_200,c_fill/x.jpg 200w, https://cdn.example/image/upload/w_800,c_fill/x.jpg 800w';
    expect(urls(cdn)).toEqual([
      'https://cdn.example/image/upload/w_200,c_fill/x.jpg',
      'https://cdn.example/image/upload/w_800,c_fill/x.jpg',
    ]);
    expect(urls('data:image/gif;base64,R0lGODlh,AQAB 1x, real.jpg 2x')).toEqual([
      'data:image/gif;base64,R0lGODlh,AQAB',
      'real.jpg',
    ]);
  });

  it('reads w, x and h descriptors and drops only the candidates the standard calls errors', () => {
    expect(parseSrcset('a.jpg 100w 80h').candidates).toEqual([{ url: 'a.jpg', width: 100, height: 80 }]);
    expect(parseSrcset('a.jpg 1.5x, b.jpg .5x, c.jpg 1e1x, d.jpg 0x').candidates.map((c) => c.density)).toEqual([
      1.5, 0.5, 10, 0,
    ]);
    const bad = [
      '100w 2x',
      '2x 100w',
      '0w',
      '-1w',
      '1.5w',
      '-1x',
      '1.x',
      '+1x',
      '2q',
      '10h',
      '0h',
      '1x 1x',
      '100w 100w',
      '1x 10h',
      '(1x)',
      'x',
    ];
    for (const d of bad) {
      const parsed = parseSrcset(`bad.jpg ${d}, good.jpg 2x`);
      expect(parsed, d).toEqual({ candidates: [{ url: 'good.jpg', density: 2 }], invalid: 1 });
    }
  });

  it('keeps a comma inside parentheses within the candidate, as the descriptor tokenizer does', () => {
    expect(parseSrcset('a.jpg (x, y) 2x, b.jpg 3x')).toEqual({
      candidates: [{ url: 'b.jpg', density: 3 }],
      invalid: 1,
    });
    expect(parseSrcset('a.jpg 2x (unclosed, b.jpg 3x')).toEqual({ candidates: [], invalid: 1 });
  });

  it('picks the widest candidate, else the densest (no descriptor is 1x), first on a tie', () => {
    expect(largest('a.jpg 1x,b.jpg 4x')).toBe('b.jpg');
    expect(largest('a.jpg 1x, b.jpg 3x, c.jpg 2x')).toBe('b.jpg');
    expect(largest('s.jpg 320w, l.jpg 1280w, m.jpg 640w')).toBe('l.jpg');
    expect(largest('a.jpg, b.jpg 0.5x')).toBe('a.jpg');
    expect(largest('a.jpg 3x, b.jpg 300w')).toBe('b.jpg');
    expect(largest('a.jpg 2x, b.jpg 2x')).toBe('a.jpg');
    expect(largest('')).toBeNull();
  });

  it('parses a hostile 0.6 MB srcset in linear time', () => {
    const huge =
      Array.from({ length: 20_000 }, (_, i) => `i${i}.jpg ${i + 1}w`).join(',') +
      ', last.jpg 9x (' +
      '('.repeat(300_000);
    const cpu0 = process.cpuUsage(); // CPU time, not wall time: other processes on a loaded machine do not count
    const parsed = parseSrcset(huge);
    const { user, system } = process.cpuUsage(cpu0);
    expect((user + system) / 1000).toBeLessThan(2000); // quadratic work on this input would take minutes
    expect(parsed.invalid).toBe(1); // the last candidate's descriptors run into an unclosed parenthesis
    expect(parsed.candidates).toHaveLength(20_000);
    expect(largestCandidate(parsed.candidates)?.url).toBe('i19999.jpg');
  });
});

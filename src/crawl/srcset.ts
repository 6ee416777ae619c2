/**
 * The HTML standard's "parse a srcset attribute" (WHATWG HTML, 4.8.4.3.10), step for step: candidates are
 * split after a URL even with no space (`a.jpg 1x,b.jpg 4x`), a URL may contain commas (`data:` URLs, CDN
 * transforms), and a candidate whose descriptors are invalid is dropped while the others are kept.
 *
 * Written here rather than taken from npm: `@prettier/parse-srcset` throws on the first invalid candidate
 * (losing the valid ones), and `srcset` (sindresorhus) keeps invalid ones (`-1w`, empty URLs) unless strict,
 * where it throws too. Browsers drop only the bad candidate.
 */

export interface SrcsetCandidate {
  /** The URL as written (not yet resolved). */
  url: string;
  /** `w` descriptor: the image's width in CSS pixels. */
  width?: number;
  /** `x` descriptor: the pixel density. A candidate without `w` or `x` is 1x. */
  density?: number;
  /** `h` descriptor (future-compat, only valid beside `w`). */
  height?: number;
}

export interface ParsedSrcset {
  candidates: SrcsetCandidate[];
  /** Candidates dropped for invalid descriptors. */
  invalid: number;
}

const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\f' || c === '\r';
const NON_NEGATIVE_INTEGER = /^[0-9]+$/;
const FLOAT = /^-?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/;

export function parseSrcset(input: string): ParsedSrcset {
  const out: ParsedSrcset = { candidates: [], invalid: 0 };
  let pos = 0;
  for (;;) {
    // Splitting loop: skip whitespace and commas, then the URL runs to the next whitespace.
    while (pos < input.length && (isSpace(input[pos]) || input[pos] === ',')) pos++;
    if (pos >= input.length) return out;
    const start = pos;
    while (pos < input.length && !isSpace(input[pos])) pos++;
    let url = input.slice(start, pos);
    let descriptors: string[] = [];
    if (url.endsWith(',')) url = url.replace(/,+$/, '');
    else [descriptors, pos] = tokenizeDescriptors(input, pos);
    const candidate = parseDescriptors(url, descriptors);
    if (candidate) out.candidates.push(candidate);
    else out.invalid++;
  }
}

/**
 * The descriptor tokenizer: up to the comma that ends the candidate, keeping parenthesised commas. A
 * descriptor is always a contiguous run of the input, so it is kept as start index, not built char by char.
 */
function tokenizeDescriptors(input: string, pos: number): [string[], number] {
  const descriptors: string[] = [];
  while (isSpace(input[pos])) pos++;
  let start = pos;
  let state: 'in' | 'parens' | 'after' = 'in';
  const flush = (end: number) => void (end > start && descriptors.push(input.slice(start, end)));
  for (; ; pos++) {
    const c = input[pos];
    if (state === 'in') {
      if (isSpace(c)) {
        flush(pos);
        state = 'after';
      } else if (c === ',' || c === undefined) {
        flush(pos);
        return [descriptors, c === undefined ? pos : pos + 1];
      } else if (c === '(') state = 'parens';
    } else if (state === 'parens') {
      if (c === undefined) {
        descriptors.push(input.slice(start, pos));
        return [descriptors, pos];
      }
      if (c === ')') state = 'in';
    } else if (c === undefined) {
      return [descriptors, pos];
    } else if (!isSpace(c)) {
      state = 'in';
      start = pos--;
    }
  }
}

/** The descriptor parser: null where the standard sets "error" (the candidate is dropped). */
function parseDescriptors(url: string, descriptors: string[]): SrcsetCandidate | null {
  const c: SrcsetCandidate = { url };
  for (const d of descriptors) {
    const value = d.slice(0, -1),
      kind = d.at(-1);
    if (kind === 'w' && NON_NEGATIVE_INTEGER.test(value)) {
      if (c.width !== undefined || c.density !== undefined) return null;
      c.width = Number(value);
      if (c.width === 0) return null;
    } else if (kind === 'x' && FLOAT.test(value)) {
      if (c.width !== undefined || c.density !== undefined || c.height !== undefined) return null;
      c.density = Math.min(Number(value), Number.MAX_VALUE);
      if (c.density < 0) return null;
    } else if (kind === 'h' && NON_NEGATIVE_INTEGER.test(value)) {
      if (c.height !== undefined || c.density !== undefined) return null;
      c.height = Number(value);
      if (c.height === 0) return null;
    } else return null;
  }
  if (c.height !== undefined && c.width === undefined) return null;
  return c;
}

/**
 * The candidate a crawler should fetch: the widest if any has a `w` descriptor, else the densest (no
 * descriptor = 1x). Ties keep the first, as the standard drops later candidates of an equal density.
 */
export function largestCandidate<T extends SrcsetCandidate>(candidates: readonly T[]): T | null {
  const widths = candidates.filter((c) => c.width !== undefined);
  const pool = widths.length > 0 ? widths : candidates;
  let best: T | null = null;
  for (const c of pool) {
    const size = c.width ?? c.density ?? 1;
    if (!best || size > (best.width ?? best.density ?? 1)) best = c;
  }
  return best;
}

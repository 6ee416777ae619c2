/**
 * Text for the report's pictures as SVG geometry, from a built-in 5x7 pixel font. sharp rasterises `<text>`
 * with pango and whatever fonts fontconfig finds: on a machine without fonts (a slim container) every glyph
 * becomes a box. Rectangles render the same everywhere, so labels read the same in any clone.
 *
 * `renderSheet` lays tiles and that SVG on a white PNG: the one way the report's pictures are made.
 *
 * Each glyph is 5 columns by 9 rows (7 above the baseline, 2 for descenders), rows separated by spaces.
 */
import sharp, { type OverlayOptions } from 'sharp';

const GLYPHS: Record<string, string> = {
  ' ': '..... ..... ..... ..... ..... ..... .....',
  '!': '..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..',
  '"': '.#.#. .#.#. ..... ..... ..... ..... .....',
  '#': '.#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.',
  $: '..#.. .#### #.#.. .###. ..#.# ####. ..#..',
  '%': '##... ##..# ...#. ..#.. .#... #..## ...##',
  '&': '.##.. #..#. #.#.. .#... #.#.# #..#. .##.#',
  "'": '..#.. ..#.. ..... ..... ..... ..... .....',
  '(': '...#. ..#.. .#... .#... .#... ..#.. ...#.',
  ')': '.#... ..#.. ...#. ...#. ...#. ..#.. .#...',
  '*': '..... ..#.. #.#.# .###. #.#.# ..#.. .....',
  '+': '..... ..#.. ..#.. ##### ..#.. ..#.. .....',
  ',': '..... ..... ..... ..... ..... .##.. .##.. ..#.. .#...',
  '-': '..... ..... ..... ##### ..... ..... .....',
  '.': '..... ..... ..... ..... ..... .##.. .##..',
  '/': '..... ....# ...#. ..#.. .#... #.... .....',
  0: '.###. #...# #..## #.#.# ##..# #...# .###.',
  1: '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
  2: '.###. #...# ....# ...#. ..#.. .#... #####',
  3: '##### ...#. ..#.. ...#. ....# #...# .###.',
  4: '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
  5: '##### #.... ####. ....# ....# #...# .###.',
  6: '..##. .#... #.... ####. #...# #...# .###.',
  7: '##### ....# ...#. ..#.. .#... .#... .#...',
  8: '.###. #...# #...# .###. #...# #...# .###.',
  9: '.###. #...# #...# .#### ....# ...#. .##..',
  ':': '..... .##.. .##.. ..... .##.. .##.. .....',
  ';': '..... .##.. .##.. ..... .##.. .##.. ..#.. .#...',
  '<': '...#. ..#.. .#... #.... .#... ..#.. ...#.',
  '=': '..... ..... ##### ..... ##### ..... .....',
  '>': '.#... ..#.. ...#. ....# ...#. ..#.. .#...',
  '?': '.###. #...# ....# ...#. ..#.. ..... ..#..',
  '@': '.###. #...# ....# .##.# #.#.# #.#.# .###.',
  A: '.###. #...# #...# ##### #...# #...# #...#',
  B: '####. #...# #...# ####. #...# #...# ####.',
  C: '.###. #...# #.... #.... #.... #...# .###.',
  D: '###.. #..#. #...# #...# #...# #..#. ###..',
  E: '##### #.... #.... ####. #.... #.... #####',
  F: '##### #.... #.... ####. #.... #.... #....',
  G: '.###. #...# #.... #.### #...# #...# .####',
  H: '#...# #...# #...# ##### #...# #...# #...#',
  I: '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  J: '..### ...#. ...#. ...#. ...#. #..#. .##..',
  K: '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
  L: '#.... #.... #.... #.... #.... #.... #####',
  M: '#...# ##.## #.#.# #.#.# #...# #...# #...#',
  N: '#...# #...# ##..# #.#.# #..## #...# #...#',
  O: '.###. #...# #...# #...# #...# #...# .###.',
  P: '####. #...# #...# ####. #.... #.... #....',
  Q: '.###. #...# #...# #...# #.#.# #..#. .##.#',
  R: '####. #...# #...# ####. #.#.. #..#. #...#',
  S: '.#### #.... #.... .###. ....# ....# ####.',
  T: '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  U: '#...# #...# #...# #...# #...# #...# .###.',
  V: '#...# #...# #...# #...# #...# .#.#. ..#..',
  W: '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
  X: '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
  Y: '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
  Z: '##### ....# ...#. ..#.. .#... #.... #####',
  '[': '.###. .#... .#... .#... .#... .#... .###.',
  '\\': '..... #.... .#... ..#.. ...#. ....# .....',
  ']': '.###. ...#. ...#. ...#. ...#. ...#. .###.',
  '^': '..#.. .#.#. #...# ..... ..... ..... .....',
  _: '..... ..... ..... ..... ..... ..... #####',
  '`': '.#... ..#.. ..... ..... ..... ..... .....',
  a: '..... ..... .###. ....# .#### #...# .####',
  b: '#.... #.... #.##. ##..# #...# #...# ####.',
  c: '..... ..... .###. #.... #.... #...# .###.',
  d: '....# ....# .##.# #..## #...# #...# .####',
  e: '..... ..... .###. #...# ##### #.... .###.',
  f: '..##. .#..# .#... ###.. .#... .#... .#...',
  g: '..... ..... .#### #...# #...# #...# .#### ....# .###.',
  h: '#.... #.... #.##. ##..# #...# #...# #...#',
  i: '..#.. ..... .##.. ..#.. ..#.. ..#.. .###.',
  j: '...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..',
  k: '#.... #.... #..#. #.#.. ##... #.#.. #..#.',
  l: '.##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  m: '..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#',
  n: '..... ..... #.##. ##..# #...# #...# #...#',
  o: '..... ..... .###. #...# #...# #...# .###.',
  p: '..... ..... ####. #...# #...# #...# ####. #.... #....',
  q: '..... ..... .#### #...# #...# #...# .#### ....# ....#',
  r: '..... ..... #.##. ##..# #.... #.... #....',
  s: '..... ..... .###. #.... .###. ....# ####.',
  t: '.#... .#... ###.. .#... .#... .#..# ..##.',
  u: '..... ..... #...# #...# #...# #..## .##.#',
  v: '..... ..... #...# #...# #...# .#.#. ..#..',
  w: '..... ..... #...# #...# #.#.# #.#.# .#.#.',
  x: '..... ..... #...# .#.#. ..#.. .#.#. #...#',
  y: '..... ..... #...# #...# #...# #...# .#### ....# .###.',
  z: '..... ..... ##### ...#. ..#.. .#... #####',
  '{': '...#. ..#.. ..#.. .#... ..#.. ..#.. ...#.',
  '|': '..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  '}': '.#... ..#.. ..#.. ...#. ..#.. ..#.. .#...',
  '~': '..... ..... .#... #.#.# ...#. ..... .....',
  '×': '..... #...# .#.#. ..#.. .#.#. #...# .....',
  '–': '..... ..... ..... ##### ..... ..... .....',
};

/** Glyph cell in font pixels: 5 wide plus 1 of spacing; 7 above the baseline, 2 below. */
export const CELL = { width: 6, ascent: 7, height: 9 } as const;

/** Runs of lit pixels per glyph, as [row, first column, length]. */
const RUNS = new Map<string, Array<[number, number, number]>>(
  Object.entries(GLYPHS).map(([ch, rows]) => [
    ch,
    rows.split(' ').flatMap((row, y) => {
      const runs: Array<[number, number, number]> = [];
      for (const m of row.matchAll(/#+/g)) runs.push([y, m.index, m[0].length]);
      return runs;
    }),
  ]),
);

export interface TextStyle {
  /** Screen pixels per font pixel: the cap height is 7 x size. @default 2 */
  size?: number;
  /** @default '#000' */
  fill?: string;
  /** Where `x` is: the start, middle or end of the text. @default 'start' */
  anchor?: 'start' | 'middle' | 'end';
  /** Rotated 90 degrees anticlockwise about (x, y), for a vertical axis title. @default false */
  vertical?: boolean;
}

/** Width in screen pixels of `text` at `size`. */
export function textWidth(text: string, size = 2): number {
  return Math.max(0, [...text].length * CELL.width - 1) * size;
}

/**
 * `text` as one SVG path with its baseline at `y`. Characters the font lacks are drawn as '?'. The path has
 * no anti-aliasing concerns: at an integer size and position every edge falls on a pixel.
 */
export function svgText(text: string, x: number, y: number, style: TextStyle = {}): string {
  const size = style.size ?? 2;
  const shift =
    style.anchor === 'middle' ? textWidth(text, size) / 2 : style.anchor === 'end' ? textWidth(text, size) : 0;
  const left = Math.round(x - shift),
    top = Math.round(y) - CELL.ascent * size;
  const d: string[] = [];
  [...text].forEach((ch, i) => {
    for (const [row, col, len] of RUNS.get(ch) ?? RUNS.get('?')!) {
      d.push(`M${left + (i * CELL.width + col) * size} ${top + row * size}h${len * size}v${size}h${-len * size}z`);
    }
  });
  const turn = style.vertical ? ` transform="rotate(-90 ${Math.round(x)} ${Math.round(y)})"` : '';
  return `<path d="${d.join('')}" fill="${style.fill ?? '#000'}"${turn}/>`;
}

/**
 * A white `width` x `height` PNG with `tiles` composited in order and then `svg` (SVG elements, such as
 * svgText's paths) drawn over them all.
 */
export function renderSheet(width: number, height: number, tiles: OverlayOptions[], svg: string[]): Promise<Buffer> {
  const overlay = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${svg.join('')}</svg>`;
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite([...tiles, { input: Buffer.from(overlay), left: 0, top: 0 }])
    .png()
    .toBuffer();
}

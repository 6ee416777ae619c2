/** Images that trip decoders: EXIF orientations, an SVG that takes minutes to render, odd shapes. */

/** `jpeg` with an APP1 EXIF block after SOI whose IFD0 holds only Orientation = `o` (no ICC profile). */
export function withOrientation(jpeg: Uint8Array, o: number, little = true): Buffer {
  const tiff = Buffer.alloc(8 + 2 + 12 + 4);
  const [u16, u32] = little
    ? [tiff.writeUInt16LE.bind(tiff), tiff.writeUInt32LE.bind(tiff)]
    : [tiff.writeUInt16BE.bind(tiff), tiff.writeUInt32BE.bind(tiff)];
  tiff.write(little ? 'II' : 'MM', 0, 'latin1');
  u16(42, 2);
  u32(8, 4);
  u16(1, 8); // one entry
  u16(0x0112, 10);
  u16(3, 12); // SHORT
  u32(1, 14);
  u16(o, 18);
  u32(0, 22); // no next IFD
  const body = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const head = Buffer.from([0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 0xff]);
  return Buffer.concat([jpeg.subarray(0, 2), head, body, jpeg.subarray(2)]);
}

/** The SVG of the report: 20 filtered layers, under 2 KB, over a minute to render. */
export function svgBomb(side = 4000): Buffer {
  let body = '';
  for (let i = 0; i < 20; i++)
    body += `<g filter="url(#b)"><rect x="${i}" y="${i}" width="${side}" height="${side}" fill="#${(i * 123456).toString(16).padStart(6, '0').slice(0, 6)}"/></g>`;
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${side}" height="${side}"><defs><filter id="b"><feGaussianBlur stdDeviation="300"/><feMorphology radius="200"/></filter></defs>${body}</svg>`,
  );
}

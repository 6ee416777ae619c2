/**
 * What a response is, as a browser that followed a link to it decides before showing it: by the Content-Type
 * Fetch extracts (`text/html, image/jpeg`, a header repeated, is a JPEG), and where the server names no type, by
 * the MIME Sniffing standard's "rules for identifying an unknown MIME type" (a static server that sends no
 * Content-Type still serves pages and images a browser shows). A file sent as `application/octet-stream` (or
 * `binary/octet-stream`, what object stores send for an upload nobody typed) is never HTML, as a browser never
 * shows it as a page; it is an image when its bytes are one, as MIME Sniffing 7.2 decides in an image context
 * (a browser's `<img>` shows such a file whatever its type): the crawler looks for images, and a photo a
 * gallery links to on a misconfigured bucket is one.
 *
 * An image is decided as MIME Sniffing 7 decides a supplied image type, by the bytes' signature, but with the
 * one image rule's signatures (shards/image-rule.ts `sniffImage`), so what the crawler takes for an image is
 * what ingest will decode: a typed image whose bytes are no kept format (an error page sent as image/jpeg) is
 * `not_an_image`, an SVG `svg_refused`, the reasons the rule gives them. The file extension plays no part.
 */
import { sniffImage } from '../shards/image-rule.js';
import { extractContentType } from './charset.js';

/** The HTML types (HTML's "HTML MIME type" and XHTML's). */
const HTML_TYPES = new Set(['text/html', 'application/xhtml+xml']);

/** Types that mean "unknown" (MIME Sniffing 7.1): sniffed as if none were given. */
const UNKNOWN_TYPES = new Set(['unknown/unknown', 'application/unknown', '*/*']);

/** Types of a file offered for download: never a page, an image when its bytes are a kept format. */
const DOWNLOAD_TYPES = new Set(['application/octet-stream', 'binary/octet-stream']);

/** The tags whose opening marks HTML (MIME Sniffing 7.1), each then followed by a space or `>`. */
const HTML_OPENINGS = [
  '<!DOCTYPE HTML',
  '<HTML',
  '<HEAD',
  '<SCRIPT',
  '<IFRAME',
  '<H1',
  '<DIV',
  '<FONT',
  '<TABLE',
  '<A',
  '<STYLE',
  '<TITLE',
  '<B',
  '<BODY',
  '<BR',
  '<P',
  '<!--',
];

/** The first 1445 bytes are what a browser sniffs (MIME Sniffing 5.2's resource header). */
const SNIFF_BYTES = 1445;

/**
 * `html` a page; `image` an image of a format the image rule keeps; `not_an_image` and `svg_refused` a response
 * typed as an image that the rule refuses from its bytes; `other` anything else (a PDF, a video, an archive,
 * text, an untyped file that sniffs as neither HTML nor an image).
 */
export type ResponseKind = 'html' | 'image' | 'not_an_image' | 'svg_refused' | 'other';

/** What a response with this Content-Type and body is to a browser that followed a link to it. */
export function responseKind(header: string | null | undefined, bytes: Uint8Array): ResponseKind {
  const essence = extractContentType(header)?.essence;
  if (essence === undefined || UNKNOWN_TYPES.has(essence)) {
    // MIME Sniffing 7.1: the HTML patterns first, then the image patterns (an untyped SVG is XML text there).
    if (sniffsAsHtml(bytes)) return 'html';
    const format = sniffImage(bytes);
    return format !== null && format !== 'svg' ? 'image' : 'other';
  }
  if (HTML_TYPES.has(essence)) return 'html';
  if (DOWNLOAD_TYPES.has(essence)) {
    const format = sniffImage(bytes);
    return format !== null && format !== 'svg' ? 'image' : 'other';
  }
  if (!essence.startsWith('image/')) return 'other';
  const format = sniffImage(bytes);
  return format === null ? 'not_an_image' : format === 'svg' ? 'svg_refused' : 'image';
}

/** What responseKind reads of an image: every signature sniffImage knows (an SVG's `<svg` within 4 KiB). */
export const IMAGE_HEAD_BYTES = 4096;

/**
 * The bytes the crawler reads of a response typed as an image or a download (Fetcher.fetch's `peek`): its
 * head, enough for responseKind. The image itself is ingest's to download, under ingest's --max-bytes, so a
 * full-size photo larger than --max-page-bytes is kept, and never downloaded twice in full.
 */
export function imageHead(contentType: string | null): number | undefined {
  const essence = extractContentType(contentType)?.essence;
  if (essence === undefined) return undefined;
  return essence.startsWith('image/') || DOWNLOAD_TYPES.has(essence) ? IMAGE_HEAD_BYTES : undefined;
}

/** Whether a page fetched with this Content-Type and body is HTML. */
export function isHtmlResponse(header: string | null | undefined, bytes: Uint8Array): boolean {
  return responseKind(header, bytes) === 'html';
}

/** MIME Sniffing's HTML patterns: after leading whitespace, an opening tag ended by a space or `>`. */
export function sniffsAsHtml(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, SNIFF_BYTES)).toString('latin1');
  const text = head.replace(/^[\t\n\f\r ]+/, '');
  const upper = text.slice(0, 16).toUpperCase();
  return HTML_OPENINGS.some((tag) => upper.startsWith(tag) && /^[ >]$/.test(text[tag.length] ?? ''));
}

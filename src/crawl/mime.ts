/**
 * Whether a response is an HTML page, as a browser decides before rendering it: by the Content-Type Fetch
 * extracts (`text/html, image/jpeg`, a header repeated, is a JPEG), and where the server names no type, by
 * the MIME Sniffing standard's "rules for identifying an unknown MIME type" (a static server that sends no
 * Content-Type still serves pages a browser shows). `application/octet-stream` is never sniffed: browsers
 * download it.
 */
import { extractContentType } from './charset.js';

/** The HTML types (HTML's "HTML MIME type" and XHTML's). */
const HTML_TYPES = new Set(['text/html', 'application/xhtml+xml']);

/** Types that mean "unknown" (MIME Sniffing 7.1): sniffed as if none were given. */
const UNKNOWN_TYPES = new Set(['unknown/unknown', 'application/unknown', '*/*']);

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

/** Whether a page fetched with this Content-Type and body is HTML. */
export function isHtmlResponse(header: string | null | undefined, bytes: Uint8Array): boolean {
  const essence = extractContentType(header)?.essence;
  if (essence === undefined || UNKNOWN_TYPES.has(essence)) return sniffsAsHtml(bytes);
  return HTML_TYPES.has(essence);
}

/** MIME Sniffing's HTML patterns: after leading whitespace, an opening tag ended by a space or `>`. */
export function sniffsAsHtml(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, SNIFF_BYTES)).toString('latin1');
  const text = head.replace(/^[\t\n\f\r ]+/, '');
  const upper = text.slice(0, 16).toUpperCase();
  return HTML_OPENINGS.some((tag) => upper.startsWith(tag) && /^[ >]$/.test(text[tag.length] ?? ''));
}

/**
 * URLs in a page resolved as the URL standard does for a document: against the base URL, the path
 * percent-encoded as UTF-8, and the query percent-encoded in the document's encoding ("encoding-parse a
 * URL": a windows-1251 page's `?q=тест` is requested as `?q=%F2%E5%F1%F2`; a character the encoding
 * lacks becomes `%26%23NNNN%3B`). UTF-16 and replacement documents use UTF-8 (Encoding "get an output
 * encoding"). The fragment is dropped: it never reaches a server.
 */
import '@exodus/bytes/encoding.js'; // registers the multi-byte encoders percentEncodeAfterEncoding needs
import { percentEncodeAfterEncoding } from '@exodus/bytes/whatwg.js';

/** Why a URL in a page is not fetched. */
export type UrlSkip = 'data_uri' | 'unsupported_scheme' | 'bad_url';

export type Resolved = { url: string } | { skip: UrlSkip };

/** The special-query percent-encode set (for http and https), as ASCII code points in increasing order. */
const SPECIAL_QUERY_SET = ' "#\'<>';

export function resolveUrl(raw: string, base: string, encoding = 'UTF-8'): Resolved {
  let u: URL;
  try {
    u = new URL(raw, base);
  } catch {
    return { skip: 'bad_url' };
  }
  if (u.protocol === 'data:') return { skip: 'data_uri' };
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return { skip: 'unsupported_scheme' };
  u.hash = '';
  const query = inputQuery(raw);
  const output = /^(utf-8|utf-16le|utf-16be|replacement)$/i.test(encoding) ? null : encoding;
  if (output && query !== null && /[^\x00-\x7f]/.test(query)) {
    // The query setter keeps `%XX` as it is, so the bytes of the document's encoding survive.
    u.search = percentEncodeAfterEncoding(output, query, SPECIAL_QUERY_SET);
  }
  return { url: u.href };
}

/** A URL without its fragment, with a lower-case scheme and host and no default port; null if not http(s). */
export function normaliseUrl(raw: string, base: string, encoding = 'UTF-8'): string | null {
  const r = resolveUrl(raw, base, encoding);
  return 'url' in r ? r.url : null;
}

/**
 * The query as written in the input, or null where the input has none (then the URL keeps its base's query,
 * already encoded). The URL parser strips leading and trailing C0 controls and spaces and removes tabs and
 * newlines; for http(s) the first `?` before any `#` starts the query.
 */
function inputQuery(raw: string): string | null {
  const input = raw.replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, '').replace(/[\t\n\r]/g, '');
  const hash = input.indexOf('#');
  const beforeHash = hash < 0 ? input : input.slice(0, hash);
  const q = beforeHash.indexOf('?');
  return q < 0 ? null : beforeHash.slice(q + 1);
}

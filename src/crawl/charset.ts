/**
 * A page's bytes to text as browsers do (HTML "determining the character encoding", WHATWG Encoding):
 * a byte order mark first, then the `Content-Type` charset, then a `<meta charset>` or
 * `<meta http-equiv=content-type>` prescan of the first 1024 bytes (encoding-sniffer implements that
 * algorithm), then, with nothing declared, UTF-8 if the bytes are valid UTF-8 and windows-1252 otherwise
 * (the standard lets a user agent autodetect there; windows-1252 is its default for most locales, and
 * valid multi-byte UTF-8 is practically never meant as windows-1252 text).
 *
 * Decoding uses @exodus/bytes' TextDecoder, which follows the Encoding standard's index tables. Node's own
 * TextDecoder does not: since 20.18.3 its windows-1252 (also the `iso-8859-1`/`latin1`/`ascii` labels)
 * loses or misreads bytes 0x80-0x9F (nodejs/node#60888; 20.20 drops them), and its ICU Shift_JIS and
 * EUC-KR converters differ from the standard's indexes.
 */
import { MIMEType } from 'node:util';
import { TextDecoder } from '@exodus/bytes/encoding.js';
import { ResultType, Sniffer } from 'encoding-sniffer/sniffer';

export interface DecodedPage {
  text: string;
  /** The WHATWG name of the encoding used (`UTF-8`, `windows-1251`, `Shift_JIS`, ...). */
  encoding: string;
}

/** A Content-Type header as the Fetch standard's "extract a MIME type" reads it (null: no valid MIME type). */
export interface ContentType {
  /** `type/subtype`, lower case. */
  essence: string;
  charset: string | null;
}

/**
 * Fetch's "extract a MIME type": of comma-joined values (a header repeated) the last valid MIME type counts,
 * and a charset carries over from an earlier value of the same essence.
 */
export function extractContentType(header: string | null | undefined): ContentType | null {
  let essence: string | null = null,
    charset: string | null = null;
  for (const value of (header ?? '').split(',')) {
    let mime: MIMEType;
    try {
      mime = new MIMEType(value.trim());
    } catch {
      continue;
    }
    if (mime.essence === '*/*') continue;
    if (mime.essence !== essence) charset = null;
    essence = mime.essence;
    charset = mime.params.get('charset') ?? charset;
  }
  return essence === null ? null : { essence, charset };
}

/** The charset of a Content-Type header, as extractContentType reads it. */
export function contentTypeCharset(header: string | null | undefined): string | null {
  return extractContentType(header)?.charset ?? null;
}

export function decodePage(bytes: Uint8Array, contentType?: string | null): DecodedPage {
  const label = contentTypeCharset(contentType);
  const sniffer = new Sniffer(label ? { transportLayerEncodingLabel: label } : {});
  sniffer.write(bytes);
  let encoding = sniffer.encoding;
  if (encoding === 'replacement') return { text: '\uFFFD', encoding }; // e.g. ISO-2022-KR: never decoded
  if (sniffer.resultType === ResultType.DEFAULT) {
    try {
      return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), encoding: 'UTF-8' };
    } catch {
      encoding = 'windows-1252';
    }
  }
  return { text: new TextDecoder(encoding).decode(bytes), encoding };
}

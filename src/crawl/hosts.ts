/**
 * The hosts a crawl follows (`--hosts`, a pipeline's `crawl.hosts`): each `host` or `host:port`, IPv6 in
 * brackets, matched against a page URL's host. checkHost decides at the option boundary, for the flag and the
 * pipeline key alike (both come from the declaration in options.ts): a URL or a path given there would never
 * equal a URL's host, so even the seed would be an `external_link`; it is refused with what to write instead.
 */
import { isIPv6 } from 'node:net';

/** A host name, IPv4 address or bracketed IPv6 address, then an optional port: no scheme, path, user or wildcard. */
const HOST_PORT = /^(\[[0-9a-f:.]+\]|[^\s/?#@[\]:\\*]+)(?::(\d{1,5}))?$/i;

/**
 * `word` as a URL writes its host (lower case, IDNA, IPv4 and IPv6 in canonical form), so that it compares
 * equal to `new URL(page).host`; throws an Error saying what to write instead when it is no `host[:port]`.
 */
export function checkHost(word: string): string {
  const host = hostPort(word);
  if (host === null) throw new Error(refusal(word));
  return host;
}

/** Whether `url` is on one of `hosts`; a default port written out (`example.org:443`) matches too, as URL drops it. */
export function followsHost(hosts: ReadonlySet<string>, url: URL): boolean {
  if (hosts.has(url.host)) return true;
  return url.port === '' && hosts.has(`${url.host}:${url.protocol === 'https:' ? 443 : 80}`);
}

/** `word` in canonical form when it is a `host[:port]` with a port from 1 to 65535, else null. */
function hostPort(word: string): string | null {
  const m = HOST_PORT.exec(word);
  const hostname = m ? hostnameOf(m[1]!) : null;
  const port = m?.[2] === undefined ? undefined : Number(m[2]);
  if (hostname === null || (port !== undefined && (port < 1 || port > 65_535))) return null;
  return port === undefined ? hostname : `${hostname}:${port}`;
}

/** The URL parser's hostname of `host`, or null where it is no valid host. */
function hostnameOf(host: string): string | null {
  try {
    return new URL(`http://${host}`).hostname || null;
  } catch {
    return null;
  }
}

/** Why `word` is refused, with the host[:port] it most likely means when there is one (a URL's, a bare IPv6's). */
function refusal(word: string): string {
  const expected = `expected host or host:port (IPv6 in brackets, as [::1]:8080), got "${word}"`;
  const candidate = isIPv6(word) ? `[${word}]` : hostOfUrl(word);
  const meant = candidate === null ? null : hostPort(candidate);
  return meant ? `${expected}: write ${meant} instead` : expected;
}

/** The host[:port] of `word` read as an http(s) URL (`http://a:8080/x`, `a:8080/`), or null. */
function hostOfUrl(word: string): string | null {
  try {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(word) ? word : `http://${word}`);
    return /^https?:$/.test(url.protocol) ? url.host : null;
  } catch {
    return null;
  }
}

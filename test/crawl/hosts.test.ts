/**
 * `--hosts` values: `host` or `host:port` (IPv6 in brackets), kept as a URL writes its host so that they match
 * page URLs; anything else is refused with what to write instead, since it would match no page (not even the seed).
 */
import { describe, expect, it } from 'vitest';
import { checkHost, followsHost } from '../../src/crawl/hosts.js';

describe('checkHost', () => {
  it('keeps host and host:port as a URL writes its host', () => {
    expect(checkHost('127.0.0.1:29010')).toBe('127.0.0.1:29010');
    expect(checkHost('Example.ORG')).toBe('example.org');
    expect(checkHost('bücher.de:8080')).toBe('xn--bcher-kva.de:8080');
    expect(checkHost('[::1]:8080')).toBe('[::1]:8080');
    expect(checkHost('[0:0:0:0:0:0:0:1]')).toBe('[::1]');
    expect(checkHost('0x7f.1')).toBe('127.0.0.1');
    expect(checkHost('example.org:0443')).toBe('example.org:443');
  });

  it('refuses a URL, a path or a bare IPv6 address, saying what to write instead', () => {
    const refused = (word: string, meant: string) =>
      expect(() => checkHost(word)).toThrow(
        `expected host or host:port (IPv6 in brackets, as [::1]:8080), got "${word}": write ${meant} instead`,
      );
    refused('http://127.0.0.1:29010', '127.0.0.1:29010');
    refused('127.0.0.1:29010/', '127.0.0.1:29010');
    refused('https://Example.org/gallery/?page=2', 'example.org');
    refused('user@example.org:8080', 'example.org:8080');
    refused('::1', '[::1]');
  });

  it('refuses what names no host, without a guess', () => {
    for (const word of ['*.example.org', 'a b', 'example.org:0', 'example.org:65536', '[1.2.3.4]', 'ftp://x.org'])
      expect(() => checkHost(word), word).toThrow(
        /^expected host or host:port \(IPv6 in brackets, as \[::1\]:8080\), got "[^"]*"$/,
      );
  });
});

describe('followsHost', () => {
  it("matches a page URL's host, a default port written out included", () => {
    const hosts = new Set([checkHost('example.org:443'), checkHost('plain.org'), checkHost('[::1]:8080')]);
    expect(followsHost(hosts, new URL('https://example.org/a'))).toBe(true);
    expect(followsHost(hosts, new URL('http://example.org/a'))).toBe(false); // port 80, not 443
    expect(followsHost(hosts, new URL('https://EXAMPLE.org:443/a'))).toBe(true);
    expect(followsHost(hosts, new URL('http://plain.org/'))).toBe(true);
    expect(followsHost(hosts, new URL('http://plain.org:8080/'))).toBe(false);
    expect(followsHost(hosts, new URL('http://[::1]:8080/'))).toBe(true);
  });
});

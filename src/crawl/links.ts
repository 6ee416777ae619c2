/**
 * A page's links as html.ts meets them: each URL once, in document order, at most `maxLinks`, with the caption
 * the link gives what it points to should that turn out to be an image (a thumbnail linking to the full-size
 * file). The caption is the link's accessible name as browsers compute it from content (WAI-ARIA accname
 * "name from content"): its text and the alt of the `<img>`s in it, in order; else its `title`; else the
 * figcaption of the `<figure>` it is in (html.ts asks, as it captions an `<img>`). An `<area>` is named by
 * its alt. Content inside `<noscript>` is what a browser without scripting shows, so it names no link: the
 * common lazy-load pattern repeats the `<img>` there, which would repeat its alt.
 *
 * A link resolves against the document base URL, the first `<base href>` anywhere in the page (HTML
 * "document base URL"), so links met before it wait, as written, until it is known (`baseKnown`).
 */
import type { Resolved } from './url.js';

/** A link's caption is cut to this many characters: it travels with the queued link in every crawl unit. */
export const LINK_CAPTION_CHARS = 1000;

/** Text gathered per anchor at most, before white space is collapsed: a page-long anchor is bounded work. */
const MAX_ANCHOR_TEXT = 4 * LINK_CAPTION_CHARS;

/** One link as written; `entry` is its URL's entry, shared by every link to that URL, once resolved. */
export interface LinkRef {
  raw: string;
  caption: string | null;
  entry?: { caption: string | null };
}

/** White space collapsed, cut to LINK_CAPTION_CHARS (never inside a surrogate pair); null when empty. */
export function linkCaption(text: string | null | undefined): string | null {
  const clean = text?.replace(/\s+/g, ' ').trim();
  if (!clean) return null;
  if (clean.length <= LINK_CAPTION_CHARS) return clean;
  const cut = clean.slice(0, LINK_CAPTION_CHARS);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

export class PageLinks {
  truncated = false;
  private readonly entries = new Map<string, { caption: string | null }>();
  private early: LinkRef[] | null = [];
  private anchor: { ref: LinkRef; text: string; title: string | undefined } | null = null;
  private noscript = 0;

  constructor(
    private readonly maxLinks: number,
    private readonly resolve: (raw: string) => Resolved,
  ) {}

  /** A link (an `<area>`, a refresh target) whose caption, if any, is known now. */
  add(raw: string, caption: string | null = null): LinkRef {
    const ref: LinkRef = { raw, caption: linkCaption(caption) };
    this.take(ref);
    return ref;
  }

  /** An `<a>` start tag: an open anchor ends here (HTML's parser closes it), and one with an href starts. */
  openAnchor(href: string | undefined, title: string | undefined): LinkRef | null {
    this.closeAnchor();
    if (!href) return null;
    const ref = this.add(href);
    this.anchor = { ref, text: '', title };
    return ref;
  }

  /** Text met inside the open anchor, or the alt of an `<img>` in it. */
  text(text: string): void {
    if (this.anchor && this.noscript === 0 && this.anchor.text.length < MAX_ANCHOR_TEXT) this.anchor.text += text;
  }

  imageAlt(alt: string | undefined): void {
    if (alt) this.text(` ${alt} `);
  }

  noscriptTag(open: boolean): void {
    this.noscript = Math.max(0, this.noscript + (open ? 1 : -1));
  }

  /** The end of the open anchor, if any: named by its content, else its title. */
  closeAnchor(): void {
    const anchor = this.anchor;
    if (!anchor) return;
    this.anchor = null;
    this.name(anchor.ref, linkCaption(anchor.text.slice(0, MAX_ANCHOR_TEXT)) ?? anchor.title);
  }

  /** Names a link that has no name yet (a figure's caption, after its content and title). */
  name(ref: LinkRef, caption: string | null | undefined): void {
    const text = linkCaption(caption);
    if (ref.caption || !text) return;
    ref.caption = text;
    if (ref.entry) ref.entry.caption ??= text;
  }

  /** The document base URL is now known: the links met before it resolve against it. */
  baseKnown(): void {
    const pending = this.early ?? [];
    this.early = null;
    for (const ref of pending) this.take(ref);
  }

  /** The links in document order, and the captions of those that have one. */
  result(): { links: string[]; captions: Map<string, string> } {
    this.closeAnchor();
    this.baseKnown();
    const captions = new Map<string, string>();
    for (const [url, { caption }] of this.entries) if (caption) captions.set(url, caption);
    return { links: [...this.entries.keys()], captions };
  }

  private take(ref: LinkRef): void {
    if (this.early) return void this.early.push(ref);
    const r = this.resolve(ref.raw);
    if (!('url' in r)) return;
    let entry = this.entries.get(r.url);
    if (!entry) {
      if (this.entries.size >= this.maxLinks) return void (this.truncated = true);
      entry = { caption: null };
      this.entries.set(r.url, entry);
    }
    entry.caption ??= ref.caption;
    ref.entry = entry;
  }
}

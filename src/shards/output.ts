/**
 * One-file outputs (an embedding table, a PNG, a JSON report) in any store: `--out` names a file by URL,
 * which is the store of its folder plus one key, so `emb.arrow`, `/abs/emb.arrow`, `file:///abs/emb.arrow`
 * and `s3://bucket/run/emb.arrow` all work, and the write is the store's atomic `put`.
 */
import { ConfigError } from '../errors.js';
import { checkStoreUrl, openStore, type Store, type StoreOptions } from './store.js';

export interface FileLocation {
  /** The store of the file's folder. */
  store: Store;
  /** The file's key within it (its name). */
  key: string;
  /** The file's full URL, for messages. */
  url: string;
}

/** Splits a file URL or path into the store of its folder and its name. */
export async function openFile(location: string, options: StoreOptions = {}): Promise<FileLocation> {
  // The whole URL: a query (`e.arrow?x`) would otherwise end up in the file's name. Its length is checked below,
  // as the one key written in its folder.
  checkStoreUrl(location, []);
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(location)?.[0] ?? '';
  const rest = location.slice(scheme.length);
  const slash = rest.lastIndexOf('/');
  const name = rest.slice(slash + 1);
  if (name === '' || name === '.' || name === '..')
    throw new ConfigError(`${location} names a folder; expected a file (such as out/embeddings.arrow)`);
  const folder = slash < 0 ? '.' : rest.slice(0, slash) || '/';
  if (scheme && slash < 0)
    throw new ConfigError(`${location} names no file inside the bucket; expected ${scheme}bucket/name`);
  const store = await openStore(scheme ? `${scheme}${folder}` : folder, options, [name]);
  return { store, key: name, url: fileIn(store.url, name) }; // `file:///` is the root: one slash before the name
}

/** Writes `bytes` as the file `location` names (atomically); returns its full URL. */
export async function putFile(location: string, bytes: Uint8Array, options: StoreOptions = {}): Promise<string> {
  const file = await openFile(location, options);
  await file.store.put(file.key, bytes);
  return file.url;
}

/** A file inside a folder given by URL or path: `join` for paths and URLs alike. */
export function fileIn(folder: string, name: string): string {
  return folder.endsWith('/') ? `${folder}${name}` : `${folder}/${name}`;
}

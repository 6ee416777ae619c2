/**
 * A crawl as an ingest source: the image candidates it found (url, caption, source_page), in the order the
 * crawl state keeps them, become the rows of an ingest job, read as the same objects in a JSONL list would be.
 * The job is identified by the bytes of that JSONL list (`images.jsonl`), so a rerun of the crawl, which
 * rebuilds the same candidates from its committed units, resumes the same ingest job.
 */
import { bytesPart, type IngestSource } from '../ingest/source.js';
import { objectRows } from '../ingest/url-list.js';
import type { FoundImage } from './state.js';

/** The name the candidates' list has in the dataset manifest. */
export const CRAWL_LIST_NAME = 'images.jsonl';

export function crawlSource(images: readonly FoundImage[]): IngestSource {
  const jsonl = images.map((image) => `${JSON.stringify(image)}\n`).join('');
  const objects = images as ReadonlyArray<FoundImage & Record<string, unknown>>;
  return {
    parts: async () => [bytesPart(CRAWL_LIST_NAME, Buffer.from(jsonl))],
    rows: async function* () {
      yield* objectRows(objects);
    },
    // As for a JSONL list, the first object's other keys are the extra columns (a crawl's have none).
    extraColumns: async () => Object.keys([...objectRows(objects.slice(0, 1))][0]?.extra ?? {}),
  };
}

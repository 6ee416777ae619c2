/**
 * Rewrites a checkpoint file in place with an edited header (and optionally payload), re-signing the sha256
 * trailer so that only the edit is wrong: the layout is "WSCKPT01", u32 LE header length, JSON header,
 * float32 payload, sha256(header + payload).
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';

export interface Parts {
  magic: Buffer;
  header: any;
  payload: Buffer;
}

export async function forgeCheckpoint(
  file: string,
  edit: (p: Parts) => Partial<Parts> & { json?: string },
): Promise<void> {
  const bytes = await readFile(file);
  const end = 12 + bytes.readUInt32LE(8);
  const parts: Parts = {
    magic: bytes.subarray(0, 8),
    header: JSON.parse(bytes.subarray(12, end).toString()),
    payload: bytes.subarray(end, bytes.length - 32),
  };
  const next = { ...parts, ...edit(parts) };
  const json = Buffer.from(next.json ?? JSON.stringify(next.header));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  const digest = createHash('sha256').update(json).update(next.payload).digest();
  await writeFile(file, Buffer.concat([next.magic, length, json, next.payload, digest]));
}

/**
 * Bounds on what a shard's Arrow metadata may claim, checked before apache-arrow parses it. Its reader trusts
 * flatbuffer vector lengths: one flipped byte in a footer that made a column claim 16,711,680 child fields
 * sent `inspect --verify`, `embed` and training into an out-of-memory crash after 44 s (1 in 99 single-byte
 * footer flips did). Every count here is held to the bytes that would have to hold it (a vector of n tables
 * takes at least 4n bytes, a Block 24, a FieldNode or Buffer 16), and the layout to the shard schema's (flat
 * columns, no dictionaries), so damage is an InvalidShardError naming it and the work stays bounded.
 */
import * as flatbuffers from 'flatbuffers';
import { Footer } from 'apache-arrow/fb/footer';
import { Message } from 'apache-arrow/fb/message';
import { MessageHeader } from 'apache-arrow/fb/message-header';
import { RecordBatch } from 'apache-arrow/fb/record-batch';
import type { Schema } from 'apache-arrow/fb/schema';
import { InvalidShardError } from '../errors.js';

/**
 * Checks the footer flatbuffer `footer` of an Arrow file whose record batches must end by byte `dataEnd` (where
 * the footer starts). Throws an InvalidShardError prefixed with `where`.
 */
export function checkFooter(footer: Uint8Array, dataEnd: number, where: string): void {
  const problem = guarded(() => {
    const f = Footer.getRootAsFooter(new flatbuffers.ByteBuffer(footer));
    const schema = f.schema();
    if (!schema) return 'has no schema';
    const bad =
      tooMany(f.dictionariesLength(), 0, 'dictionary batches (a shard has none)') ??
      tooMany(f.recordBatchesLength(), footer.byteLength / 24, 'record batches') ??
      tooMany(f.customMetadataLength(), footer.byteLength / 4, 'metadata entries') ??
      schemaProblem(schema, footer.byteLength);
    if (bad) return bad;
    for (let i = 0; i < f.recordBatchesLength(); i++) {
      const block = f.recordBatches(i)!;
      const [offset, meta, body] = [Number(block.offset()), block.metaDataLength(), Number(block.bodyLength())];
      if (offset < 8 || meta <= 0 || body < 0 || offset + meta + body > dataEnd)
        return `record batch ${i} lies outside the file (bytes ${offset} + ${meta} + ${body} of ${dataEnd})`;
    }
    return null;
  });
  if (problem) throw new InvalidShardError(`${where}: corrupt Arrow footer: it ${problem}`);
}

/** The schema's fields and metadata held to `bytes`, and to flat columns (the shard schema has no nested one). */
function schemaProblem(schema: Schema, bytes: number): string | null {
  const cap = bytes / 4;
  const own = tooMany(schema.fieldsLength(), cap, 'fields') ?? tooMany(schema.customMetadataLength(), cap, 'metadata');
  if (own) return own;
  for (let i = 0; i < schema.fieldsLength(); i++) {
    const field = schema.fields(i)!;
    const bad =
      tooMany(field.childrenLength(), 0, `child fields in column ${i} (a shard's columns are flat)`) ??
      tooMany(field.customMetadataLength(), cap, `metadata entries in column ${i}`);
    if (bad) return bad;
  }
  return null;
}

/**
 * Checks the metadata of a record batch block (its IPC message: the continuation marker, the length, the
 * flatbuffer) against the block's `bytes`: a RecordBatch message whose nodes, buffers and rows fit its body.
 * Throws an InvalidShardError prefixed with `where`.
 */
export function checkBatchMessage(block: Uint8Array, where: string): void {
  const problem = guarded(() => {
    const view = Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    const start = view.readUInt32LE(0) === 0xffffffff ? 8 : 4; // the marker, absent in old IPC files
    const length = view.readInt32LE(start - 4);
    if (length <= 0 || start + length > view.byteLength) return `claims ${length} metadata bytes`;
    const message = Message.getRootAsMessage(new flatbuffers.ByteBuffer(view.subarray(start, start + length)));
    if (message.headerType() !== MessageHeader.RecordBatch) return 'is not a record batch';
    const batch = message.header(new RecordBatch()) as RecordBatch | null;
    if (!batch) return 'has no record batch header';
    const body = Number(message.bodyLength());
    if (body < 0 || body > view.byteLength - start - length) return `claims a body of ${body} bytes`;
    const bad =
      tooMany(batch.nodesLength(), length / 16, 'column nodes') ??
      tooMany(batch.buffersLength(), length / 16, 'buffers') ??
      // Each row holds a key, whose offsets take 4 bytes a row: more rows than that cannot be in the body.
      tooMany(Number(batch.length()), body / 4, 'rows');
    if (bad) return bad;
    for (let i = 0; i < batch.buffersLength(); i++) {
      const buffer = batch.buffers(i)!;
      if (Number(buffer.offset()) < 0 || Number(buffer.offset()) + Number(buffer.length()) > body)
        return `has buffer ${i} outside its body`;
    }
    return null;
  });
  if (problem) throw new InvalidShardError(`${where}: corrupt record batch metadata: it ${problem}`);
}

/** `claims n <what>` when `n` is above `cap`, else null. */
function tooMany(n: number, cap: number, what: string): string | null {
  return n > cap ? `claims ${n} ${what}` : null;
}

/** A check's problem, or the flatbuffer's own fault when reading it throws (an offset past its end). */
function guarded(check: () => string | null): string | null {
  try {
    return check();
  } catch (err) {
    return `does not read (${(err as Error).message.split('\n')[0]})`;
  }
}

/**
 * Checks a whole Arrow IPC file in memory (`inspect --verify`): its magic and footer (checkFooter), then every
 * record batch's metadata (checkBatchMessage). Throws an InvalidShardError prefixed with `where`.
 */
export function checkArrowFile(bytes: Uint8Array, where: string): void {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = (at: number) => view.subarray(at, at + 6).toString('latin1') === 'ARROW1';
  if (view.byteLength < 18 || !magic(0) || !magic(view.byteLength - 6))
    throw new InvalidShardError(`${where}: not an Arrow IPC file (no ARROW1 magic at both ends)`);
  const footerLength = view.readInt32LE(view.byteLength - 10);
  const footerStart = view.byteLength - 10 - footerLength;
  if (footerLength <= 0 || footerStart < 8)
    throw new InvalidShardError(`${where}: corrupt Arrow footer length ${footerLength}`);
  const footer = view.subarray(footerStart, footerStart + footerLength);
  checkFooter(footer, footerStart, where);
  const f = Footer.getRootAsFooter(new flatbuffers.ByteBuffer(footer));
  for (let i = 0; i < f.recordBatchesLength(); i++) {
    const block = f.recordBatches(i)!;
    const offset = Number(block.offset());
    const end = offset + block.metaDataLength() + Number(block.bodyLength());
    checkBatchMessage(view.subarray(offset, end), `${where} batch ${i}`);
  }
}

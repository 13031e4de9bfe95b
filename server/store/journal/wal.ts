/**
 * A check of a SQLite write-ahead log for damage that SQLite itself passes over in silence.
 *
 * When SQLite replays a log it stops at the first frame whose checksum or salt does not match, and
 * takes everything before it: a torn last write after a crash is dropped, as it should be — but
 * so is everything after a damaged frame in the middle. Frames carry the log's current salts; a
 * frame with those salts *after* a bad one was written by the same generation of the log, later
 * than the damage, so it holds commits that would be lost. Frames of an older generation (a log is
 * reused from its start after a checkpoint) carry other salts and are ignored, as SQLite does.
 *
 * The format is SQLite's "WAL file format": a 32-byte header, then frames of a 24-byte header and
 * one page each, with a running checksum over both.
 *
 * @module
 */

const HEADER = 32;
const FRAME_HEADER = 24;

/** The running checksum of SQLite's log over `data` (a multiple of 8 bytes), from `s0`, `s1`. */
function checksum(data: DataView, start: number, end: number, bigEndian: boolean, s: [number, number]): void {
  let [s0, s1] = s;
  for (let i = start; i < end; i += 8) {
    s0 = (s0 + data.getUint32(i, !bigEndian) + s1) >>> 0;
    s1 = (s1 + data.getUint32(i + 4, !bigEndian) + s0) >>> 0;
  }
  s[0] = s0;
  s[1] = s1;
}

/**
 * What is wrong with a log, or `undefined` when SQLite would replay all that was committed to it.
 *
 * @example
 * ```ts
 * import { checkWal } from "./wal.ts";
 * import assert from "node:assert/strict";
 * assert.equal(checkWal(new Uint8Array(0)), undefined); // an empty log
 * assert.match(checkWal(new Uint8Array(40))!, /header/);
 * ```
 */
export function checkWal(bytes: Uint8Array): string | undefined {
  if (bytes.length === 0) return undefined;
  if (bytes.length < HEADER) return `has a broken header (${bytes.length} bytes)`;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  if (magic !== 0x377f0682 && magic !== 0x377f0683) return "has a broken header (not a SQLite log)";
  const bigEndian = (magic & 1) === 1;
  const pageSize = view.getUint32(8);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    return `has a broken header (page size ${pageSize})`;
  }
  const salt1 = view.getUint32(16);
  const salt2 = view.getUint32(20);
  const s: [number, number] = [0, 0];
  checksum(view, 0, 24, bigEndian, s);
  if (s[0] !== view.getUint32(24) || s[1] !== view.getUint32(28)) {
    // A header that does not check out: SQLite ignores the whole log.
    return hasFrames(view, pageSize, salt1, salt2, HEADER)
      ? "has a damaged header: SQLite would ignore every commit in it"
      : undefined;
  }
  const frameSize = FRAME_HEADER + pageSize;
  let at = HEADER;
  let frame = 0;
  for (; at + frameSize <= bytes.length; at += frameSize, frame++) {
    if (view.getUint32(at + 8) !== salt1 || view.getUint32(at + 12) !== salt2) break;
    checksum(view, at, at + 8, bigEndian, s);
    checksum(view, at + FRAME_HEADER, at + frameSize, bigEndian, s);
    if (s[0] !== view.getUint32(at + 16) || s[1] !== view.getUint32(at + 20)) break;
  }
  // `at` is the first frame SQLite will not replay. A later frame of this generation means damage.
  const later = at + frameSize <= bytes.length ? countFrames(view, pageSize, salt1, salt2, at + frameSize) : 0;
  if (later === 0) return undefined;
  return `is damaged at frame ${
    frame + 1
  } (byte ${at}): SQLite would drop the ${later} later frame(s) written after it`;
}

function hasFrames(view: DataView, pageSize: number, salt1: number, salt2: number, from: number): boolean {
  return countFrames(view, pageSize, salt1, salt2, from) > 0;
}

/** Frames from `from` on that carry the log's current salts. */
function countFrames(view: DataView, pageSize: number, salt1: number, salt2: number, from: number): number {
  const frameSize = FRAME_HEADER + pageSize;
  let n = 0;
  for (let at = from; at + frameSize <= view.byteLength; at += frameSize) {
    if (view.getUint32(at + 8) === salt1 && view.getUint32(at + 12) === salt2) n++;
  }
  return n;
}

import assert from "node:assert/strict";
import { LineSplitter } from "./lines.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("LineSplitter: complete lines, CRLF, carry-over across chunks", () => {
  const s = new LineSplitter(100);
  assert.deepEqual(s.push(enc("one\r\ntwo\nthr")), [{ line: "one" }, { line: "two" }]);
  assert.deepEqual(s.push(enc("ee")), []);
  assert.deepEqual(s.push(enc("\n\nfour\n")), [{ line: "three" }, { line: "" }, { line: "four" }]);
});

Deno.test("LineSplitter: a multi-byte character split across chunks is decoded whole", () => {
  const s = new LineSplitter(100);
  const bytes = enc("短信\n");
  assert.deepEqual(s.push(bytes.subarray(0, 2)), []);
  assert.deepEqual(s.push(bytes.subarray(2)), [{ line: "短信" }]);
});

Deno.test("LineSplitter: a line that is not UTF-8 is reported alone; its neighbours survive", () => {
  const s = new LineSplitter(100);
  const events = s.push(new Uint8Array([0x61, 0x0a, 0xc3, 0x28, 0x0a, 0x62, 0x0a]));
  assert.deepEqual(events, [{ line: "a" }, { invalidUtf8: true }, { line: "b" }]);
});

Deno.test("LineSplitter: over-long lines, complete or not, are caught at maxLine bytes", () => {
  const s = new LineSplitter(8);
  assert.deepEqual(s.push(enc("12345678\r\n")), [{ line: "12345678" }]);
  const events = s.push(enc("ok\n123456789\nlater\n"));
  assert.deepEqual(events, [{ line: "ok" }, { tooLong: 9 }]);
  const open = new LineSplitter(8);
  assert.deepEqual(open.push(enc("12345")), []);
  assert.deepEqual(open.push(enc("67890")), [{ tooLong: 10 }]);
  // Multi-byte: 3 characters, 9 bytes.
  assert.deepEqual(new LineSplitter(8).push(enc("短信息\n")), [{ tooLong: 9 }]);
});

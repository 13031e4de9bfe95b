import assert from "node:assert/strict";
import { newRingBuffer, RingReader, RingWriter } from "./ring.ts";

Deno.test("RingWriter.write() and RingReader.drain() pass records in order, across many wrap-arounds", () => {
  const buffer = newRingBuffer(512);
  const got: string[] = [];
  const reader = new RingReader(buffer, (nums, text) => got.push(`${[...nums].join(",")}|${text}`));
  const writer = new RingWriter(buffer);
  const sent: string[] = [];
  for (let n = 0; n < 2000; n++) {
    const nums = Array.from({ length: n % 5 }, (_, k) => n + k / 2);
    const text = "é".repeat(n % 37) + String(n);
    while (!writer.write(0, nums, text)) reader.drain(); // full: the reader makes room
    sent.push(`${nums.join(",")}|${text}`);
    if (n % 3 === 0) reader.drain();
  }
  reader.drain();
  assert.deepEqual(got, sent);
});

Deno.test("RingWriter.write() refuses a record that does not fit, writing nothing", () => {
  const buffer = newRingBuffer(256);
  const got: string[] = [];
  const reader = new RingReader(buffer, (_nums, text) => got.push(text));
  const writer = new RingWriter(buffer);
  assert.equal(writer.write(0, [], "x".repeat(200)), false, "larger than the ring");
  assert.ok(writer.write(0, [], "a".repeat(40)));
  let refused = 0;
  while (writer.write(0, [], "b".repeat(40))) refused++;
  assert.ok(refused >= 1);
  reader.drain();
  assert.equal(got[0], "a".repeat(40));
  assert.ok(got.slice(1).every((t) => t === "b".repeat(40)));
  assert.ok(writer.write(0, [], "c"), "room again after a drain");
});

Deno.test("RingReader.drain() holds a record until as many messages as its fence have been received", () => {
  const buffer = newRingBuffer(1024);
  const got: string[] = [];
  const reader = new RingReader(buffer, (_nums, text) => got.push(text));
  const writer = new RingWriter(buffer);
  writer.write(0, [], "before any message");
  writer.write(2, [], "after two messages");
  assert.equal(reader.drain(), false);
  assert.deepEqual(got, ["before any message"]);
  reader.received = 1;
  reader.drain();
  assert.equal(got.length, 1);
  reader.received = 2;
  assert.equal(reader.drain(), true);
  assert.deepEqual(got, ["before any message", "after two messages"]);
});

Deno.test("RingReader.run() parks, wakes on a write, and ends on stop()", async () => {
  // A pending Atomics.waitAsync does not keep Deno's event loop alive (a server's sockets do): this timer does.
  const alive = setInterval(() => {}, 1000);
  const buffer = newRingBuffer(1024);
  const came = Promise.withResolvers<string>();
  const reader = new RingReader(buffer, (_nums, text) => came.resolve(text));
  const running = reader.run();
  // Parked: the reader's flag in the ring's control words (the third Int32) is set while it waits.
  const parked = () => Atomics.load(new Int32Array(buffer, 0, 4), 2) === 1;
  for (let i = 0; i < 500 && !parked(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(parked(), "the reader parked with nothing to read");
  new RingWriter(buffer).write(0, [], "wake up");
  assert.equal(await came.promise, "wake up");
  reader.stop();
  await running;
  clearInterval(alive);
});

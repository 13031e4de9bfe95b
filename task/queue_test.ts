import assert from "node:assert/strict";
import { Deque } from "./queue.ts";

Deno.test("Deque is FIFO across growth and wrap-around", () => {
  const q = new Deque<number>();
  let next = 0;
  let expect = 0;
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 37; i++) q.push(next++);
    for (let i = 0; i < 29; i++) assert.equal(q.shift(), expect++);
  }
  assert.equal(q.length, next - expect);
  while (q.length) assert.equal(q.shift(), expect++);
  assert.equal(q.shift(), undefined);
  assert.equal(q.peek(), undefined);
});

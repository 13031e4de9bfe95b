import assert from "node:assert/strict";
import { MinHeap } from "./heap.ts";
import { seededRandom as random } from "./_seeded_random.ts";

Deno.test("MinHeap gives keys in order, equal keys first in first out, across growth and removal", () => {
  const rnd = random(1);
  const heap = new MinHeap<{ key: number; n: number }>();
  const model: { key: number; n: number }[] = [];
  let n = 0;
  for (let round = 0; round < 200; round++) {
    for (let i = 0; i < 1 + Math.floor(rnd() * 40); i++) {
      const item = { key: Math.floor(rnd() * 10), n: n++ };
      heap.push(item, item.key);
      model.push(item);
    }
    if (round % 7 === 3) {
      const gone = heap.removeAll((x) => x.n % 5 === 0).sort((a, b) => a.n - b.n);
      const expected = model.filter((x) => x.n % 5 === 0).sort((a, b) => a.n - b.n);
      assert.deepEqual(gone, expected);
      model.splice(0, model.length, ...model.filter((x) => x.n % 5 !== 0));
    }
    model.sort((a, b) => a.key - b.key || a.n - b.n);
    for (let i = 0; i < Math.floor(rnd() * 40) && model.length > 0; i++) {
      assert.equal(heap.peekKey(), model[0].key);
      assert.equal(heap.peek(), model[0]);
      assert.equal(heap.shift(), model.shift());
    }
    assert.equal(heap.length, model.length);
  }
  while (model.length > 0) assert.equal(heap.shift(), model.shift());
  assert.equal(heap.shift(), undefined);
  assert.equal(heap.peek(), undefined);
  assert.equal(heap.peekKey(), undefined);
});

Deno.test("MinHeap refuses a NaN key; entries lists what is in it; clear empties it", () => {
  const heap = new MinHeap<string>();
  assert.throws(() => heap.push("x", NaN), RangeError);
  heap.push("a", 2);
  heap.push("b", -Infinity);
  assert.deepEqual([...heap.entries()].sort(), [["a", 2], ["b", -Infinity]]);
  assert.deepEqual(heap.removeAll(() => false), []);
  assert.equal(heap.remove(() => false), undefined);
  heap.clear();
  assert.equal(heap.length, 0);
  heap.push("c", 1);
  assert.equal(heap.shift(), "c");
});

Deno.test("MinHeap.remove() takes out the matching item served first, and keeps the heap in order", () => {
  const rnd = random(11);
  const heap = new MinHeap<number>();
  const model: { n: number; key: number }[] = [];
  for (let n = 0; n < 3000; n++) {
    const key = Math.floor(rnd() * 50);
    heap.push(n, key);
    model.push({ n, key });
    if (n % 4 === 3) {
      const mod = Math.floor(rnd() * 7);
      const matches = model.filter((m) => m.n % 7 === mod).sort((a, b) => a.key - b.key || a.n - b.n);
      assert.equal(heap.remove((x) => x % 7 === mod), matches[0]?.n);
      if (matches[0]) model.splice(model.indexOf(matches[0]), 1);
    }
  }
  model.sort((a, b) => a.key - b.key || a.n - b.n);
  for (const m of model) assert.equal(heap.shift(), m.n);
  assert.equal(heap.length, 0);
});

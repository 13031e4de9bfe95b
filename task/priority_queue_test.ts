import assert from "node:assert/strict";
import { DEFAULT_AGING_MS, MinHeap, PriorityQueue } from "./priority_queue.ts";
import { Deque } from "./queue.ts";

/** A small deterministic random generator (mulberry32), so that failures repeat. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

Deno.test("PriorityQueue: higher priority first, FIFO within a priority", () => {
  const q = new PriorityQueue<string>({ agingMs: Infinity });
  q.push("low-1", -1, 0);
  q.push("mid-1", 0, 1);
  q.push("high-1", 100, 2);
  q.push("mid-2", 0, 3);
  q.push("low-2", -1, 4);
  q.push("high-2", 100, 5);
  // without aging, the times do not matter: a late high-priority task still goes first
  q.push("mid-3", 0, 1e12);
  assert.equal(q.length, 7);
  assert.equal(q.peek(), "high-1");
  const out: string[] = [];
  for (let t = q.shift(); t !== undefined; t = q.shift()) out.push(t);
  assert.deepEqual(out, ["high-1", "high-2", "mid-1", "mid-2", "mid-3", "low-1", "low-2"]);
});

Deno.test("PriorityQueue: same time and priority keep push order; defaults: priority 0, performance.now()", () => {
  const q = new PriorityQueue<number>();
  for (let i = 0; i < 100; i++) q.push(i, 3, 500);
  for (let i = 0; i < 100; i++) assert.equal(q.shift(), i);
  const d = new PriorityQueue<string>();
  d.push("a");
  d.push("b");
  d.push("urgent", 1);
  assert.deepEqual([d.shift(), d.shift(), d.shift()], ["urgent", "a", "b"]);
});

Deno.test("PriorityQueue aging: effective priority rises by 1 per agingMs waited", () => {
  const A = DEFAULT_AGING_MS;
  const q = new PriorityQueue<string>();
  q.push("old-low", -2, 0);
  // 2 agingMs later, old-low has aged to 0 and ties with a fresh priority 0 task: ties go in push order
  q.push("tie", 0, 2 * A);
  q.push("fresh", 0, 2 * A + 1);
  q.push("fresher-but-higher", 1, 2 * A + 1);
  assert.deepEqual([q.shift(), q.shift(), q.shift(), q.shift()], ["fresher-but-higher", "old-low", "tie", "fresh"]);

  // a stream of priority 100 tasks cannot starve a priority -100 one past 200 × agingMs
  const s = new PriorityQueue<string>({ agingMs: 100 });
  s.push("starved", -100, 0);
  let served = 0;
  for (let now = 1;; now++) {
    s.push("vip", 100, now);
    const got = s.shift();
    if (got === "starved") break;
    served++;
  }
  assert.ok(served <= 200 * 100, `served ${served}`);
  assert.ok(served >= 200 * 100 - 1, `served ${served}`);
});

Deno.test("PriorityQueue agrees with a model: order by (enqueuedAt - priority·agingMs, push order)", () => {
  const rnd = random(7);
  const A = 50;
  const q = new PriorityQueue<number>({ agingMs: A });
  const model: { n: number; key: number }[] = [];
  let now = 0;
  for (let n = 0; n < 5000; n++) {
    now += Math.floor(rnd() * 30);
    const p = Math.floor(rnd() * 201) - 100;
    q.push(n, p, now);
    model.push({ n, key: now - p * A });
    if (rnd() < 0.45) {
      model.sort((a, b) => a.key - b.key || a.n - b.n);
      assert.equal(q.shift(), model.shift()!.n);
    }
    if (n % 1000 === 999) {
      const gone = q.removeAll((x) => x % 3 === 0).sort((a, b) => a - b);
      assert.deepEqual(gone, model.filter((m) => m.n % 3 === 0).map((m) => m.n).sort((a, b) => a - b));
      model.splice(0, model.length, ...model.filter((m) => m.n % 3 !== 0));
    }
  }
  model.sort((a, b) => a.key - b.key || a.n - b.n);
  assert.deepEqual([...q].sort((a, b) => a - b), model.map((m) => m.n).sort((a, b) => a - b));
  for (const m of model) assert.equal(q.shift(), m.n);
  assert.equal(q.length, 0);
});

Deno.test("remove takes out the matching item served first, and keeps the heap in order", () => {
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

  const q = new PriorityQueue<string>({ agingMs: Infinity });
  for (const [t, p] of [["a", 0], ["b", 5], ["c", 5], ["d", 0]] as const) q.push(t, p);
  assert.equal(q.remove((t) => t === "c" || t === "d"), "c"); // c is served before d
  assert.equal(q.remove((t) => t === "zz"), undefined);
  assert.deepEqual([q.shift(), q.shift(), q.shift(), q.length], ["b", "a", "d", 0]);
});

Deno.test("PriorityQueue refuses an agingMs that is not more than 0", () => {
  assert.throws(() => new PriorityQueue({ agingMs: 0 }), /agingMs/);
  assert.throws(() => new PriorityQueue({ agingMs: NaN }), /agingMs/);
  const q = new PriorityQueue<number>();
  q.push(1);
  q.clear();
  assert.equal(q.length, 0);
});

function benchEnabled(): boolean {
  return Deno.permissions.querySync({ name: "env", variable: "ASYNCTASK_BENCH" }).state === "granted" &&
    Deno.env.get("ASYNCTASK_BENCH") === "1";
}

Deno.test({
  name: "1M push then shift: PriorityQueue vs Deque (ASYNCTASK_BENCH=1 to run; prints the times)",
  ignore: !benchEnabled(),
  fn() {
    const N = 1_000_000;
    const rnd = random(3);
    const priorities = Array.from({ length: N }, () => Math.floor(rnd() * 201) - 100);
    const items = Array.from({ length: N }, (_, i) => ({ id: i }));
    const runs = 5;
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
    const time = (fn: () => void) => {
      const t0 = performance.now();
      fn();
      return performance.now() - t0;
    };
    const rows: Record<string, { push: number[]; shift: number[] }> = {
      "PriorityQueue, random priorities": { push: [], shift: [] },
      "PriorityQueue, all priority 0": { push: [], shift: [] },
      "Deque": { push: [], shift: [] },
    };
    for (let r = 0; r < runs; r++) {
      let q = new PriorityQueue<{ id: number }>();
      rows["PriorityQueue, random priorities"].push.push(time(() => {
        for (let i = 0; i < N; i++) q.push(items[i], priorities[i], i);
      }));
      rows["PriorityQueue, random priorities"].shift.push(time(() => {
        for (let i = 0; i < N; i++) q.shift();
      }));
      q = new PriorityQueue<{ id: number }>();
      rows["PriorityQueue, all priority 0"].push.push(time(() => {
        for (let i = 0; i < N; i++) q.push(items[i], 0, i);
      }));
      rows["PriorityQueue, all priority 0"].shift.push(time(() => {
        for (let i = 0; i < N; i++) q.shift();
      }));
      const d = new Deque<{ id: number }>();
      rows["Deque"].push.push(time(() => {
        for (let i = 0; i < N; i++) d.push(items[i]);
      }));
      rows["Deque"].shift.push(time(() => {
        for (let i = 0; i < N; i++) d.shift();
      }));
    }
    for (const [name, { push, shift }] of Object.entries(rows)) {
      const p = median(push), s = median(shift);
      console.log(
        `${name}: 1M push ${p.toFixed(0)} ms, 1M shift ${s.toFixed(0)} ms, ${
          ((p + s) * 1000 / N).toFixed(2)
        } µs per task`,
      );
    }
  },
});

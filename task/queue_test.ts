import assert from "node:assert/strict";
import { DEFAULT_AGING_MS, Deque, PriorityLane } from "./queue.ts";
import { seededRandom as random } from "./_seeded_random.ts";

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

interface Item {
  n: number;
  at: number;
}

Deno.test("PriorityLane: higher priority first, first in first out within a priority", () => {
  const lane = new PriorityLane<Item>((t) => t.at, 1e12); // aging too slow to matter here
  const pushed: [number, number][] = [[-1, 0], [0, 1], [100, 2], [0, 3], [-1, 4], [100, 5], [0, 6], [7, 7]];
  for (const [p, n] of pushed) lane.push({ n, at: n }, p);
  assert.equal(lane.length, 8);
  assert.equal(lane.peek()?.n, 2);
  const out: number[] = [];
  for (let t = lane.shift(); t !== undefined; t = lane.shift()) out.push(t.n);
  assert.deepEqual(out, [2, 5, 7, 1, 3, 6, 0, 4]);
  assert.equal(lane.peek(), undefined);
});

Deno.test("PriorityLane: a task rises one level per agingMs waited, so a stream of high priorities cannot starve a low one", () => {
  const A = DEFAULT_AGING_MS;
  const lane = new PriorityLane<Item>((t) => t.at);
  lane.push({ n: 0, at: 0 }, -2); // after 2 × agingMs it ranks as a fresh priority-0 task
  lane.push({ n: 1, at: 2 * A + 1 }, 0);
  lane.push({ n: 2, at: 2 * A + 1 }, 1);
  assert.deepEqual([lane.shift()?.n, lane.shift()?.n, lane.shift()?.n], [2, 0, 1]);

  const starving = new PriorityLane<Item>((t) => t.at, 100);
  starving.push({ n: -1, at: 0 }, -100);
  let served = 0;
  for (let now = 1;; now++) {
    starving.push({ n: now, at: now }, 100);
    if (starving.shift()?.n === -1) break;
    served++;
  }
  // Served once it has waited 200 levels' worth: 200 × 100 ms.
  assert.ok(served >= 200 * 100 - 1 && served <= 200 * 100, `served ${served} before it`);
});

Deno.test("PriorityLane agrees with a model: by queued-at − priority × agingMs, then priority 0 first, then push order", () => {
  const rnd = random(7);
  const A = 50;
  const lane = new PriorityLane<Item>((t) => t.at, A);
  const model: { n: number; key: number; plain: boolean }[] = [];
  const order = (a: typeof model[0], b: typeof model[0]) =>
    a.key - b.key || Number(b.plain) - Number(a.plain) || a.n - b.n;
  let now = 0;
  for (let n = 0; n < 5000; n++) {
    now += Math.floor(rnd() * 30);
    // Half the tasks of priority 0 (the pool's common case), the rest from -100 to 100.
    const p = rnd() < 0.5 ? 0 : Math.floor(rnd() * 201) - 100;
    lane.push({ n, at: now }, p);
    model.push({ n, key: now - p * A, plain: p === 0 });
    if (rnd() < 0.45) {
      model.sort(order);
      assert.equal(lane.shift()?.n, model.shift()!.n);
    }
    if (n % 100 === 99) {
      const mod = Math.floor(rnd() * 7);
      const removed = lane.remove((t) => t.n % 7 === mod);
      const i = model.findIndex((m) => m.n === removed?.n);
      assert.equal(
        removed === undefined,
        !model.some((m) => m.n % 7 === mod),
        "remove() finds a match when there is one",
      );
      if (removed) {
        assert.equal(removed.n % 7, mod);
        model.splice(i, 1);
      }
    }
    assert.equal(lane.length, model.length);
  }
  model.sort(order);
  for (const m of model) assert.equal(lane.shift()?.n, m.n);
  assert.equal(lane.length, 0);
});

function benchEnabled(): boolean {
  return Deno.permissions.querySync({ name: "env", variable: "ASYNCTASK_BENCH" }).state === "granted" &&
    Deno.env.get("ASYNCTASK_BENCH") === "1";
}

Deno.test({
  name: "1M push then shift: PriorityLane vs Deque (ASYNCTASK_BENCH=1 to run; prints the times)",
  ignore: !benchEnabled(),
  fn() {
    const N = 1_000_000;
    const rnd = random(3);
    const priorities = Array.from({ length: N }, () => Math.floor(rnd() * 201) - 100);
    const items = Array.from({ length: N }, (_, n) => ({ n, at: n }));
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
    const time = (fn: () => void) => {
      const t0 = performance.now();
      fn();
      return performance.now() - t0;
    };
    const rows: Record<string, { push: number[]; shift: number[] }> = {
      "PriorityLane, random priorities": { push: [], shift: [] },
      "PriorityLane, all priority 0": { push: [], shift: [] },
      "Deque": { push: [], shift: [] },
    };
    for (let r = 0; r < 5; r++) {
      for (
        const [name, priority] of [["PriorityLane, random priorities", (i: number) => priorities[i]], [
          "PriorityLane, all priority 0",
          () => 0,
        ]] as const
      ) {
        const lane = new PriorityLane<Item>((t) => t.at);
        rows[name].push.push(time(() => {
          for (let i = 0; i < N; i++) lane.push(items[i], priority(i));
        }));
        rows[name].shift.push(time(() => {
          for (let i = 0; i < N; i++) lane.shift();
        }));
      }
      const d = new Deque<Item>();
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

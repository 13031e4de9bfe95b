import assert from "node:assert/strict";
import { Histogram } from "./histogram.ts";

Deno.test("Histogram: exact below 128 µs, within 2% above, whatever the order of samples", () => {
  const h = new Histogram();
  const values = Array.from({ length: 100_000 }, (_, i) => i + 1);
  for (let i = values.length - 1; i > 0; i--) {
    const j = (i * 7919) % (i + 1);
    [values[i], values[j]] = [values[j], values[i]];
  }
  for (const v of values) h.record(v);
  assert.equal(h.count, 100_000);
  assert.equal(h.max, 100_000);
  for (const p of [0.5, 0.9, 0.99, 0.999]) {
    const exact = p * 100_000;
    assert.ok(Math.abs(h.percentile(p) - exact) / exact < 0.02, `p${p * 100}: ${h.percentile(p)} vs ${exact}`);
  }
  const small = new Histogram();
  for (const v of [3, 1, 2, 100]) small.record(v);
  assert.deepEqual([small.percentile(0.25), small.percentile(0.5), small.percentile(1)], [1, 2, 100]);
  assert.equal(new Histogram().percentile(0.5), 0);
});

Deno.test("Histogram.merge adds counts", () => {
  const a = new Histogram();
  const b = new Histogram();
  a.record(10);
  b.record(20_000);
  a.merge(b);
  assert.equal(a.count, 2);
  assert.equal(a.max, 20_000);
  assert.equal(a.mean, 10_005);
});

import assert from "node:assert/strict";
import { parseRate, parseRateLimits, RateLimiter, type RateLimitSpec, tryStartAll } from "./rate.ts";
import type { Result } from "./timing.ts";

function ok<T>(r: Result<T>): T {
  if (!r.ok) throw new assert.AssertionError({ message: `expected a value, got: ${r.message}` });
  return r.value;
}

function message<T>(r: Result<T>): string {
  if (r.ok) throw new assert.AssertionError({ message: `expected a message, got ${JSON.stringify(r.value)}` });
  return r.message;
}

function spec(value: unknown): RateLimitSpec {
  return ok(parseRateLimits(value, "tasks.t.rate"))[0];
}

/** A clock the test moves. */
function clock(start = Date.UTC(2026, 11, 2, 10)) {
  const c = { now: start, read: () => c.now };
  return c;
}

Deno.test("parseRate: n/s, n/min, n/h, and nothing else", () => {
  assert.deepEqual(ok(parseRate("100/s")), { count: 100, periodMs: 1000, text: "100/s" });
  assert.deepEqual(ok(parseRate("10/min")), { count: 10, periodMs: 60_000, text: "10/min" });
  assert.deepEqual(ok(parseRate(" 1000 / h ")), { count: 1000, periodMs: 3_600_000, text: "1000/h" });
  assert.equal(
    message(parseRate("10/m")),
    'rate "10/m" has an unknown period "m"; use s, min or h, such as "10/min"',
  );
  assert.match(message(parseRate("0/s")), /the count must be from 1 to 1000000000/);
  assert.match(message(parseRate("2000000000/s")), /the count must be from 1/);
  for (const bad of ["1.5/s", "-1/s", "10", "/s", "10/", "10 per minute", "10/MIN", ""]) {
    assert.match(message(parseRate(bad)), /rate must be a rate such as "100\/s", "10\/min" or "1000\/h", not /, bad);
  }
  assert.match(message(parseRate(10)), /not 10$/);
  assert.match(message(parseRate("10/d", "tasks.x.rate:")), /^tasks\.x\.rate: "10\/d" has an unknown period "d"/);
});

Deno.test("parseRateLimits: a rate, an object, or an array of them; messages name the key", () => {
  const one = ok(parseRateLimits("100/s", "tasks.sms.rate"));
  assert.equal(one.length, 1);
  assert.equal(one[0].burst, 100);
  assert.equal(one[0].key, undefined);
  const obj = ok(parseRateLimits({ limit: "1/min", key: "sms:{phone}", burst: 1 }, "tasks.sms.rate"))[0];
  assert.equal(obj.rate.text, "1/min");
  assert.equal(obj.burst, 1);
  assert.equal(obj.key?.source, "sms:{phone}");
  assert.equal(ok(parseRateLimits(["1/s", "60/min"], "tasks.sms.rate")).length, 2);

  const m = (v: unknown) => message(parseRateLimits(v, "tasks.sms.rate"));
  assert.equal(m("fast"), 'tasks.sms.rate: must be a rate such as "100/s", "10/min" or "1000/h", not "fast"');
  assert.equal(
    m(["1/s", "1/d"]),
    'tasks.sms.rate[1]: "1/d" has an unknown period "d"; use s, min or h, such as "1/min"',
  );
  assert.equal(m([]), 'tasks.sms.rate: give at least one limit, such as "100/s"');
  assert.equal(m(5), 'tasks.sms.rate: must be a rate such as "100/s", or {"limit": "1/min", "key": "{phone}"}, not 5');
  assert.equal(
    m({ limt: "1/s" }),
    "tasks.sms.rate.limt: is not a setting of a rate limit; its settings are limit, burst, key",
  );
  assert.equal(m({ key: "{phone}" }), 'tasks.sms.rate.limit: is missing: give a rate such as "1/min"');
  assert.match(m({ limit: "1/sec" }), /^tasks\.sms\.rate\.limit: "1\/sec" has an unknown period "sec"/);
  assert.equal(
    m({ limit: "10/s", burst: 0 }),
    "tasks.sms.rate.burst: must be a whole number from 1 to 10 (the limit's count), not 0",
  );
  assert.match(m({ limit: "10/s", burst: 2.5 }), /not 2\.5$/);
  assert.equal(m({ limit: "10/s", key: 5 }), 'tasks.sms.rate.key: must be a key template such as "{phone}", not 5');
  assert.match(m({ limit: "10/s", key: "{phone" }), /^tasks\.sms\.rate\.key "\{phone" has a "\{" that is never closed/);
  assert.match(m([{ limit: "10/s", key: "phone" }]), /^tasks\.sms\.rate\[0\]\.key "phone" has no field/);
});

Deno.test("token bucket: a burst of count at once, then one every period/count", () => {
  const c = clock();
  const t0 = c.now;
  const l = new RateLimiter(spec("100/s"), { clock: c.read });
  for (let i = 0; i < 100; i++) assert.ok(l.tryStart(), `start ${i}`);
  assert.equal(l.mayStart(), false);
  assert.equal(l.tryStart(), false);
  assert.equal(l.nextSlot(), t0 + 10);
  assert.equal(l.waitFor(), 10);
  c.now += 9;
  assert.equal(l.tryStart(), false);
  c.now += 1;
  assert.ok(l.tryStart());
  assert.equal(l.tryStart(), false);
  // a full second idle gives the whole burst back, and no more
  c.now += 5000;
  let n = 0;
  while (l.tryStart()) n++;
  assert.equal(n, 100);
});

Deno.test("burst 1 spreads starts evenly; a fractional interval keeps its long-run rate", () => {
  const c = clock();
  const t0 = c.now;
  const even = new RateLimiter(spec({ limit: "10/min", burst: 1 }), { clock: c.read });
  assert.ok(even.tryStart());
  assert.equal(even.nextSlot(), t0 + 6000);
  c.now += 5999;
  assert.equal(even.mayStart(), false);
  c.now += 1;
  assert.ok(even.tryStart());

  // 3/s with burst 3, tried every ms for 10 s: 3 at once, then one every 333.3 ms
  const d = clock();
  const start = d.now;
  const third = new RateLimiter(spec("3/s"), { clock: d.read });
  const times: number[] = [];
  for (; d.now <= start + 10_000; d.now++) while (third.tryStart()) times.push(d.now - start);
  assert.equal(times.length, 3 + 30);
  assert.deepEqual(times.slice(0, 6), [0, 0, 0, 334, 667, 1000]);
  assert.equal(times.at(-1), 10_000);
});

Deno.test("per key: each key has its own slots; nextSlot says when, describe says why", () => {
  const c = clock();
  const t0 = c.now;
  const sms = new RateLimiter(spec({ limit: "1/min", key: "{phone}" }), { clock: c.read, name: "sms" });
  assert.deepEqual(sms.keyFor({ phone: "+331" }), { ok: true, value: "+331" });
  assert.match(message(sms.keyFor({ to: "+331" })), /the data has no data\.phone/);
  assert.ok(sms.tryStart("+331"));
  assert.ok(sms.tryStart("+332"));
  assert.equal(sms.tryStart("+331"), false);
  assert.equal(sms.nextSlot("+331"), t0 + 60_000);
  assert.equal(sms.nextSlot("+333"), t0);
  assert.equal(sms.describe("+331"), 'sms: 1/min per key "+331"');
  assert.equal(sms.size, 2);

  const task = new RateLimiter(spec({ limit: "10/s", burst: 2 }), { clock: c.read });
  assert.deepEqual(task.keyFor("anything"), { ok: true, value: "" });
  assert.equal(task.describe(), "10/s (burst 2)");
  assert.throws(
    () => new RateLimiter({ rate: ok(parseRate("2/s")), burst: 3 }),
    /burst must be a whole number from 1 to 2/,
  );
});

Deno.test("memory is bounded: idle keys are forgotten as starts go on; maxKeys evicts the oldest", () => {
  const c = clock();
  const l = new RateLimiter(spec({ limit: "1/s", key: "{k}" }), { clock: c.read });
  for (let i = 0; i < 1000; i++) assert.ok(l.tryStart(`old-${i}`));
  assert.equal(l.size, 1000);
  c.now += 1000; // every old key is idle now
  for (let i = 0; i < 600; i++) assert.ok(l.tryStart(`new-${i}`));
  // each start dropped up to two idle keys from the front
  assert.equal(l.size, 600);
  c.now += 1000;
  l.sweep();
  assert.equal(l.size, 0);

  const small = new RateLimiter(spec({ limit: "1/h", key: "{k}" }), { clock: c.read, maxKeys: 10 });
  for (let i = 0; i < 25; i++) assert.ok(small.tryStart(`k${i}`));
  assert.equal(small.size, 10);
  // the evicted keys (k0..k14) may start again early; the kept ones may not
  assert.ok(small.mayStart("k0"));
  assert.equal(small.mayStart("k24"), false);
});

Deno.test("export and import keep the next slot of each key across a restart", () => {
  const c = clock();
  const t0 = c.now;
  const before = new RateLimiter(spec({ limit: "2/min", key: "{k}" }), { clock: c.read });
  before.tryStart("a");
  before.tryStart("a");
  before.tryStart("b");
  before.tryStart("__proto__");
  c.now += 10_000;
  const state = JSON.parse(JSON.stringify(before.export()));
  assert.deepEqual(state, {
    version: 1,
    limit: "2/min",
    burst: 2,
    keys: [["a", t0 + 60_000], ["b", t0 + 30_000], ["__proto__", t0 + 30_000]],
  });

  // the same limit: the exact state comes back
  const after = new RateLimiter(spec({ limit: "2/min", key: "{k}" }), { clock: c.read });
  assert.equal(ok(after.import(state)), 3);
  assert.equal(after.nextSlot("a"), t0 + 30_000);
  assert.equal(after.nextSlot("b"), c.now);
  assert.ok(after.tryStart("b"));
  assert.equal(after.tryStart("b"), false);
  assert.ok(after.tryStart("__proto__"));
  assert.equal(after.mayStart("__proto__"), false);

  // idle keys are skipped
  c.now = t0 + 40_000;
  const later = new RateLimiter(spec({ limit: "2/min", key: "{k}" }), { clock: c.read });
  assert.equal(ok(later.import(state)), 1);
  assert.equal(later.size, 1);

  // a looser limit: the two slots "a" used in the last 10 s are a fifth of 10/min's pace, and it has 10
  c.now = t0 + 10_000;
  const looser = new RateLimiter(spec({ limit: "10/min", key: "{k}" }), { clock: c.read });
  assert.equal(ok(looser.import(state)), 3);
  assert.ok(looser.mayStart("a"));
  // a stricter one: 1.67 slots in use at 1/min, burst 1: "a" waits 100 s
  const stricter = new RateLimiter(spec({ limit: "1/min", key: "{k}" }), { clock: c.read });
  assert.equal(ok(stricter.import(state)), 3);
  assert.equal(stricter.nextSlot("a"), c.now + 100_000);
  assert.equal(stricter.nextSlot("b"), c.now + 40_000);
});

Deno.test("import refuses a state it cannot read, and says what is wrong", () => {
  const l = new RateLimiter(spec("1/s"));
  const m = (s: unknown) => message(l.import(s));
  assert.equal(m(null), "rate limit state: must be an object from export()");
  assert.equal(m({ version: 2 }), "rate limit state: unknown version 2; this server reads version 1");
  assert.match(m({ version: 1, limit: "fast", burst: 1, keys: [] }), /^rate limit state: limit must be a rate/);
  assert.match(m({ version: 1, limit: "1/s", burst: 2, keys: [] }), /burst must be a whole number from 1 to 1, not 2/);
  assert.match(m({ version: 1, limit: "1/s", burst: 1, keys: {} }), /keys must be an array of \[key, time\] pairs$/);
  assert.match(m({ version: 1, limit: "1/s", burst: 1, keys: [["a", "soon"]] }), /pairs, not \["a","soon"\]/);
  assert.match(m({ version: 1, limit: "1/s", burst: 1, keys: [[1, 2]] }), /pairs, not \[1,2\]/);
  assert.equal(ok(l.import({ version: 1, limit: "1/s", burst: 1, keys: [] })), 0);
});

Deno.test("tryStartAll takes a slot from every limit, or from none, and says until when to wait", () => {
  const c = clock();
  const t0 = c.now;
  const all = new RateLimiter(spec("2/s"), { clock: c.read, name: "sms" });
  const perPhone = new RateLimiter(spec({ limit: "1/min", key: "{phone}" }), { clock: c.read, name: "sms" });
  assert.deepEqual(tryStartAll([[all, ""], [perPhone, "+331"]]), { ok: true });
  const wait = tryStartAll([[all, ""], [perPhone, "+331"]]);
  assert.ok(!wait.ok);
  assert.equal(wait.until, t0 + 60_000);
  assert.equal(wait.limiter, perPhone);
  assert.equal(wait.message, 'rate limit sms: 1/min per key "+331": next slot at 2026-12-02T10:01:00.000Z (in 60s)');
  assert.deepEqual(tryStartAll([[all, ""], [perPhone, "+332"]]), { ok: true });
  // the task's own limit is used up now: the later of the two slots is the one to wait for
  const both = tryStartAll([[all, ""], [perPhone, "+333"]]);
  assert.ok(!both.ok);
  assert.equal(both.until, t0 + 500);
  assert.equal(both.message, "rate limit sms: 2/s: next slot at 2026-12-02T10:00:00.500Z (in 500ms)");
  assert.ok(perPhone.mayStart("+333"), "a refused start takes nothing");
  assert.deepEqual(tryStartAll([]), { ok: true });
});

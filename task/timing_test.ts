import assert from "node:assert/strict";
import {
  compileTemplate,
  DEFAULT_MAX_DELAY_MS,
  MAX_KEY_LENGTH,
  parseDuration,
  parsePriority,
  parseRunAt,
  parseTiming,
  parseUniqueKey,
  type Result,
  type Template,
} from "./timing.ts";

function ok<T>(r: Result<T>): T {
  if (!r.ok) throw new assert.AssertionError({ message: `expected a value, got: ${r.message}` });
  return r.value;
}

function message<T>(r: Result<T>): string {
  if (r.ok) throw new assert.AssertionError({ message: `expected a message, got ${JSON.stringify(r.value)}` });
  return r.message;
}

Deno.test("priority: whole numbers from -100 to 100, as numbers or text; 0 by default", () => {
  assert.equal(ok(parsePriority(undefined)), 0);
  assert.equal(ok(parsePriority(-100)), -100);
  assert.equal(ok(parsePriority(100)), 100);
  assert.equal(ok(parsePriority("7")), 7);
  assert.equal(ok(parsePriority(" -3 ")), -3);
  assert.ok(Object.is(ok(parsePriority(-0)), 0));
  for (const bad of [101, -101, 1.5, NaN, Infinity, "high", "1e2", "", null, true, [1], { p: 1 }]) {
    const m = message(parsePriority(bad));
    assert.match(m, /^"priority" must be a whole number from -100 to 100 \(higher runs sooner; default 0\), not /);
  }
  assert.match(message(parsePriority(1.5)), /not 1\.5$/);
  assert.match(message(parsePriority(NaN)), /not NaN$/);
});

Deno.test("delay: durations with units, compound durations, or whole milliseconds", () => {
  assert.equal(ok(parseDuration("30s")), 30_000);
  assert.equal(ok(parseDuration("2m")), 120_000);
  assert.equal(ok(parseDuration("1h30m")), 5_400_000);
  assert.equal(ok(parseDuration("1h 30m 15s")), 5_415_000);
  assert.equal(ok(parseDuration("1d12h")), 129_600_000);
  assert.equal(ok(parseDuration("1.5s")), 1500);
  assert.equal(ok(parseDuration("250ms")), 250);
  assert.equal(ok(parseDuration("2m500ms")), 120_500);
  assert.equal(ok(parseDuration(" 0 ")), 0);
  assert.equal(ok(parseDuration(0)), 0);
  assert.equal(ok(parseDuration(1500)), 1500);
});

Deno.test("delay: what is refused, and what the message asks for instead", () => {
  assert.match(message(parseDuration(-5)), /^"delay" is negative \(-5\); send 0 or more/);
  assert.match(message(parseDuration("-30s")), /^"delay" is negative \("-30s"\)/);
  assert.match(message(parseDuration("5")), /^"delay" "5" needs a unit: send "5s" or "5ms", or the number 5 for ms$/);
  assert.match(message(parseDuration("30m1h")), /from the largest to the smallest, e\.g\. "1h30m"/);
  assert.match(message(parseDuration("1m1m")), /give each unit once/);
  assert.match(message(parseDuration("30 seconds")), /a duration such as "30s", "2m" or "1h30m"/);
  assert.match(message(parseDuration("1w")), /not "1w"/);
  assert.match(message(parseDuration(1.5)), /a whole number of milliseconds, not 1\.5/);
  assert.match(message(parseDuration(Infinity)), /not Infinity/);
  assert.match(message(parseDuration(true)), /not true/);
  assert.match(message(parseDuration("")), /not ""/);
  assert.match(message(parseDuration("9".repeat(20) + "d")), /too long/);
  assert.match(message(parseDuration("x", "every")), /^"every" must be/);
});

Deno.test("run_at: RFC 3339 with an offset or Z", () => {
  assert.equal(ok(parseRunAt("2026-12-02T10:00:00+08:00")), Date.UTC(2026, 11, 2, 2, 0, 0));
  assert.equal(ok(parseRunAt("2026-12-02T02:00:00Z")), Date.UTC(2026, 11, 2, 2, 0, 0));
  assert.equal(ok(parseRunAt("2026-12-02t02:00:00z")), Date.UTC(2026, 11, 2, 2, 0, 0));
  assert.equal(ok(parseRunAt("2026-12-02 02:00:00Z")), Date.UTC(2026, 11, 2, 2, 0, 0));
  assert.equal(ok(parseRunAt("2026-12-01T21:30:00-04:30")), Date.UTC(2026, 11, 2, 2, 0, 0));
  assert.equal(ok(parseRunAt("2026-12-02T02:00:00.2509Z")), Date.UTC(2026, 11, 2, 2, 0, 0, 250));
  assert.equal(ok(parseRunAt("2028-02-29T00:00:00Z")), Date.UTC(2028, 1, 29));
  assert.equal(ok(parseRunAt("2016-12-31T23:59:60Z")), Date.UTC(2017, 0, 1)); // a leap second
  assert.equal(ok(parseRunAt("0099-01-01T00:00:00Z")), -59042995200000);
});

Deno.test("run_at: what is refused", () => {
  assert.match(message(parseRunAt("2026-12-02T10:00:00")), /has no offset: add one, such as "\+08:00", or "Z" for UTC/);
  assert.match(message(parseRunAt("2026-12-02T10:00")), /has no offset/);
  for (const bad of ["2026-02-30T00:00:00Z", "2027-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-12-02T24:00:00Z"]) {
    assert.match(message(parseRunAt(bad)), /is not a real date and time/, bad);
  }
  assert.match(message(parseRunAt("2026-12-02T10:00:00+24:00")), /not a real date and time/);
  for (const bad of ["tomorrow", "2026-12-02", "1764669600000", "2026-12-02T10:00:00+0800"]) {
    assert.match(message(parseRunAt(bad)), /must be an RFC 3339 time with its offset/, bad);
  }
  assert.match(message(parseRunAt(1764669600000)), /not 1764669600000$/);
});

Deno.test("unique_key: 1 to 256 characters of text", () => {
  assert.equal(ok(parseUniqueKey(undefined)), undefined);
  assert.equal(ok(parseUniqueKey("k")), "k");
  assert.equal(ok(parseUniqueKey("x".repeat(MAX_KEY_LENGTH))), "x".repeat(256));
  assert.match(message(parseUniqueKey("")), /1 to 256 characters, such as "order-17", not 0 characters long/);
  assert.match(message(parseUniqueKey("x".repeat(257))), /not 257 characters long/);
  assert.match(message(parseUniqueKey(17)), /not 17$/);
});

Deno.test("parseTiming: due time from delay or run_at, within --max-delay; priority and unique_key", () => {
  const now = Date.UTC(2026, 11, 1, 12);
  assert.deepEqual(ok(parseTiming({}, { now })), { priority: 0, dueAt: now, delayed: false });
  assert.deepEqual(ok(parseTiming({ delay: 0, priority: "-5", unique_key: "u" }, { now })), {
    priority: -5,
    dueAt: now,
    delayed: false,
    uniqueKey: "u",
  });
  assert.equal(ok(parseTiming({ delay: "1h30m" }, { now })).dueAt, now + 5_400_000);
  assert.equal(ok(parseTiming({ run_at: "2026-12-02T10:00:00+08:00" }, { now })).dueAt, Date.UTC(2026, 11, 2, 2));
  // in the past: due at once
  assert.deepEqual(ok(parseTiming({ run_at: "2020-01-01T00:00:00Z" }, { now })), {
    priority: 0,
    dueAt: now,
    delayed: false,
  });
  // exactly at the limit is allowed; one ms past it is not
  assert.equal(ok(parseTiming({ delay: "30d" }, { now })).dueAt, now + DEFAULT_MAX_DELAY_MS);
  assert.equal(
    message(parseTiming({ delay: DEFAULT_MAX_DELAY_MS + 1 }, { now })),
    `"delay" 2592000001 is past --max-delay 30d; send at most 30d`,
  );
  assert.equal(
    message(parseTiming({ run_at: "2027-01-10T12:00:00Z" }, { now })),
    `"run_at" "2027-01-10T12:00:00Z" is 40.0d ahead, past --max-delay 30d; send a time before 2026-12-31T12:00:00.000Z`,
  );
  assert.match(message(parseTiming({ delay: "2h" }, { now, maxDelayMs: 3_600_000 })), /past --max-delay 1h/);
  assert.match(
    message(parseTiming({ run_at: "2026-12-01T13:30:00Z" }, { now, maxDelayMs: 3_600_000 })),
    /is 1\.5h ahead, past --max-delay 1h/,
  );
  assert.match(message(parseTiming({ delay: "1s", run_at: "2026-12-02T10:00:00Z" }, { now })), /not both/);
  assert.match(message(parseTiming({ priority: 500, delay: "1s" }, { now })), /^"priority"/);
  assert.match(message(parseTiming({ unique_key: "" }, { now })), /^"unique_key"/);
  assert.match(message(parseTiming({ delay: "soon" }, { now })), /^"delay"/);
  assert.match(message(parseTiming({ run_at: "soon" }, { now })), /^"run_at"/);
});

function template(source: string): Template {
  return ok(compileTemplate(source, "the rate key"));
}

Deno.test("templates: fields from the data, dot paths, the whole data, literal braces", () => {
  assert.equal(ok(template("{phone}").render({ phone: "+33612345678" })), "+33612345678");
  assert.equal(ok(template("sms:{data.to}").render({ to: "+1555" })), "sms:+1555");
  assert.equal(ok(template("{data}").render("13800138000")), "13800138000");
  assert.equal(ok(template("{data}").render({ a: 1 })), '{"a":1}');
  assert.equal(ok(template("{ user.id }/{items.1.sku}").render({ user: { id: 7 }, items: [{}, { sku: "b" }] })), "7/b");
  assert.equal(ok(template("{data.data.x}").render({ data: { x: true } })), "true");
  assert.equal(ok(template("{a}").render({ a: null })), "null");
  assert.equal(ok(template("{{{a}}}").render({ a: "x" })), "{x}");
  assert.equal(ok(template("{a-b}_{c_d}").render({ "a-b": 1, c_d: 2 })), "1_2");
  assert.deepEqual(template("sms:{data.to}:{phone}").fields, ["data.to", "phone"]);
  assert.equal(template("x{a}").source, "x{a}");
});

Deno.test("templates: a missing field is named; a key is 1 to 256 characters", () => {
  const t = template("sms:{data.to}");
  assert.equal(
    message(t.render({ phone: "1" })),
    `the data has no data.to, which the rate key "sms:{data.to}" needs; send data with it`,
  );
  assert.equal(
    message(t.render("+1555")),
    `the data has no data.to, which the rate key "sms:{data.to}" needs: data is text, not an object with "to"`,
  );
  assert.match(message(template("{a.b.c}").render({ a: { b: 5 } })), /data\.a\.b is number, not an object with "c"/);
  assert.match(message(template("{a.b}").render({ a: null })), /data\.a is null/);
  assert.match(message(template("{constructor}").render({})), /has no data\.constructor/);
  assert.match(message(template("{length}").render("abc")), /data is text/);
  assert.match(
    message(template("{a}").render({ a: "" })),
    /gives a key of 0 characters from this data; a key has 1 to 256/,
  );
  assert.match(message(template("{a}").render({ a: "x".repeat(300) })), /300 characters/);
});

Deno.test("templates: malformed ones are refused with what to write instead", () => {
  assert.match(message(compileTemplate("{phone")), /^the key template "\{phone" has a "\{" that is never closed/);
  assert.match(message(compileTemplate("phone}")), /has a "\}" that closes nothing; write "\}\}"/);
  assert.match(message(compileTemplate("{}")), /\{\} is not a field; write a dot path such as \{phone\}/);
  assert.match(message(compileTemplate("{a..b}")), /\{a\.\.b\} is not a field/);
  assert.match(message(compileTemplate("{a b}")), /\{a b\} is not a field/);
  assert.match(message(compileTemplate("sms")), /has no field: every task would share one key/);
  assert.match(
    message(compileTemplate("{{a}}", "tasks.sms.rate.key")),
    /^tasks\.sms\.rate\.key "\{\{a\}\}" has no field/,
  );
});

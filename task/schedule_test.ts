import assert from "node:assert/strict";
import {
  parseSchedules,
  type ParseSchedulesOptions,
  REAL_CLOCK,
  Scheduler,
  type SchedulerClock,
  type SchedulerOptions,
  type ScheduleSpec,
  Timetable,
} from "./schedule.ts";

/** A clock whose time moves only when the test says, running the timers that come due on the way. */
class FakeClock implements SchedulerClock {
  #timers = new Map<number, { at: number; fn: () => void }>();
  #nextId = 1;
  /** The longest timer asked for, in ms. */
  longest = 0;

  constructor(public time: number) {}

  now(): number {
    return this.time;
  }

  setTimer(fn: () => void, ms: number): unknown {
    const id = this.#nextId++;
    this.longest = Math.max(this.longest, ms);
    this.#timers.set(id, { at: this.time + ms, fn });
    return id;
  }

  clearTimer(handle: unknown): void {
    this.#timers.delete(handle as number); // a handle from setTimer above
  }

  get pending(): number {
    return this.#timers.size;
  }

  /** Moves to `to`, running each timer at its time, in order. */
  advanceTo(to: number): void {
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) if (!first || entry[1].at < first[1].at) first = entry;
      if (!first || first[1].at > to) break;
      this.#timers.delete(first[0]);
      this.time = Math.max(this.time, first[1].at);
      first[1].fn();
    }
    this.time = to;
  }

  /** Moves to `to` without running any timer (a stalled event loop), then runs the overdue ones. */
  stallUntil(to: number): void {
    this.time = to;
    this.advanceTo(to);
  }
}

function specs(section: unknown, options?: ParseSchedulesOptions): ScheduleSpec[] {
  const got = parseSchedules(section, options);
  if (!got.ok) throw new assert.AssertionError({ message: `expected schedules, got: ${got.message}` });
  return got.value;
}

function refused(section: unknown, options?: ParseSchedulesOptions): string {
  const got = parseSchedules(section, options);
  if (got.ok) throw new assert.AssertionError({ message: "expected a message" });
  return got.message;
}

/** A started scheduler on a fake clock, with what it submitted as "name ISO-time" lines. */
function harness(section: unknown, start: string, lastRuns?: Record<string, number>, options: SchedulerOptions = {}) {
  const clock = new FakeClock(Date.parse(start));
  const runs: string[] = [];
  const scheduler = new Scheduler(specs(section), (spec, dueAt, run) => {
    runs.push(`${spec.name} ${new Date(dueAt).toISOString()}${run.catchUp ? " catch-up" : ""}`);
  }, { clock, ...options });
  scheduler.start(lastRuns);
  return { clock, runs, scheduler };
}

const iso = (text: string) => Date.parse(text);

Deno.test("parseSchedules reads every key, with defaults", () => {
  const [nightly, poll] = specs({
    nightly: { task: "report", data: { kind: "daily" }, cron: "30 2 * * *", tz: "europe/paris" },
    poll: { task: "feed", every: "1h30m", missed: "run-once", priority: -10 },
  }, { tasks: ["report", "feed"] });
  assert.deepEqual(nightly, {
    name: "nightly",
    task: "report",
    data: { kind: "daily" },
    cron: "30 2 * * *",
    tz: "Europe/Paris",
    missed: "skip",
    priority: 0,
    where: "schedules.nightly",
  });
  assert.deepEqual(poll, {
    name: "poll",
    task: "feed",
    data: null,
    everyMs: 5_400_000,
    missed: "run-once",
    priority: -10,
    where: "schedules.poll",
  });
  assert.equal(specs({ a: { task: "t", cron: "*/10 * * * * *" } })[0].tz, "UTC");
  assert.equal(specs({ a: { task: "t", cron: "@daily" } })[0].cron, "@daily");
  assert.equal(specs({ a: { task: "t", every: 1000 } })[0].everyMs, 1000);
  assert.deepEqual(specs({}), []);
});

Deno.test("parseSchedules names the key of each mistake as written in the file", () => {
  const cases: [unknown, string | RegExp][] = [
    [[], /^schedules: must be an object of schedule names/],
    [{ "-x": { task: "t", every: "1m" } }, /^schedules\.-x: a schedule name is 1 to 64 letters/],
    [{ n: "daily" }, /^schedules\.n: must be an object, e\.g\./],
    [
      { n: { task: "t", every: "1m", evry: "1m" } },
      "schedules.n.evry: is not a setting of a schedule; " +
      "its settings are task, data, cron, tz, every, missed, priority",
    ],
    [{ n: { every: "1m" } }, 'schedules.n.task: must name the task to run, such as "report"'],
    [{ n: { task: 5, every: "1m" } }, 'schedules.n.task: must name the task to run, such as "report", not 5'],
    [{ n: { task: "t" } }, 'schedules.n: say when: give "cron" (such as "*/5 * * * *") or "every" (such as "10m")'],
    [{ n: { task: "t", cron: "* * * * *", every: "1m" } }, 'schedules.n: give "cron" or "every", not both'],
    [
      { n: { task: "t", every: "500ms" } },
      'schedules.n.every: "500ms" is less than 1s; give 1s or more, or a "cron" with seconds',
    ],
    [{ n: { task: "t", every: 999 } }, /^schedules\.n\.every: 999 is less than 1s/],
    [
      { n: { task: "t", every: "10" } },
      'schedules.n.every: "10" needs a unit: send "10s" or "10ms", or the number 10 for ms',
    ],
    [{ n: { task: "t", every: "often" } }, /^schedules\.n\.every: must be a duration such as "30s"/],
    [{ n: { task: "t", every: -5 } }, /^schedules\.n\.every: is negative \(-5\)/],
    [{ n: { task: "t", every: "1m", tz: "UTC" } }, /^schedules\.n\.tz: applies to "cron" only/],
    [
      { n: { task: "t", cron: "* * *" } },
      /^schedules\.n\.cron: "\* \* \*" is not a cron expression \(invalid configuration format .*\): write 5 fields/,
    ],
    [
      { n: { task: "t", cron: "61 * * * *" } },
      'schedules.n.cron: "61 * * * *" is not a cron expression (Invalid value for minute: 61): ' +
      'write 5 fields (minute hour day-of-month month day-of-week), such as "*/5 * * * *" or "30 2 * * 1-5", ' +
      "or 6 with seconds first",
    ],
    [
      { n: { task: "t", cron: "*/0 * * * *" } },
      /^schedules\.n\.cron: "\*\/0 \* \* \* \*" is not a cron expression \(Syntax error, illegal stepping: 0\)/,
    ],
    [
      { n: { task: "t", cron: "0 0 0 1 1 * 2030" } },
      /^schedules\.n\.cron: .* is not a cron expression \(mode '5-or-6-parts' requires exactly 5 or 6 parts/,
    ],
    [{ n: { task: "t", cron: "@reboot" } }, /^schedules\.n\.cron: "@reboot" is not a cron expression/],
    [{ n: { task: "t", cron: "0 0 30 2 *" } }, /^schedules\.n\.cron: "0 0 30 2 \*" never matches a date to come/],
    [{ n: { task: "t", cron: 5 } }, 'schedules.n.cron: must be a cron expression such as "*/5 * * * *", not 5'],
    [
      { n: { task: "t", cron: "* * * * *", tz: "Europe/Pariss" } },
      'schedules.n.tz: "Europe/Pariss" is not a time zone this server knows: ' +
      'give an IANA time zone such as "Europe/Paris", "America/New_York" or "UTC"',
    ],
    [
      { n: { task: "t", cron: "* * * * *", tz: "+01:00" } },
      /^schedules\.n\.tz: "\+01:00" is an offset, not a time zone: .* \(or "Etc\/GMT-1" for \+01:00\)/,
    ],
    [{ n: { task: "t", cron: "* * * * *", tz: "" } }, /^schedules\.n\.tz: must be an IANA time zone/],
    [
      { n: { task: "t", every: "1m", missed: "catch-up" } },
      'schedules.n.missed: must be "skip" (drop the runs missed while the server was down) ' +
      'or "run-once" (one run at once), not "catch-up"',
    ],
    [
      { n: { task: "t", every: "1m", priority: 101 } },
      "schedules.n.priority: must be a whole number from -100 to 100 (higher runs sooner), not 101",
    ],
    [{ n: { task: "t", every: "1m", priority: "5" } }, /^schedules\.n\.priority: .* not "5"$/],
  ];
  for (const [section, expected] of cases) {
    const got = refused(section);
    if (typeof expected === "string") assert.equal(got, expected);
    else assert.match(got, expected);
  }
  assert.equal(
    refused({ n: { task: "sned", every: "1m" } }, { tasks: ["send", "report"] }),
    'schedules.n.task: "sned" is not a task of the "tasks" map; the tasks are send, report',
  );
  // the first mistake in the file is the one reported
  assert.match(refused({ ok: { task: "t", every: "1m" }, bad: { task: "t" } }), /^schedules\.bad: say when/);
});

Deno.test("Timetable: every is aligned on the epoch; cron slots after and at-or-before", () => {
  const every = new Timetable({ everyMs: 600_000 });
  assert.equal(every.after(iso("2026-12-02T10:00:00Z")), iso("2026-12-02T10:10:00Z"));
  assert.equal(every.after(iso("2026-12-02T10:09:59.999Z")), iso("2026-12-02T10:10:00Z"));
  assert.equal(every.atOrBefore(iso("2026-12-02T10:09:59.999Z")), iso("2026-12-02T10:00:00Z"));
  const cron = new Timetable({ cron: "*/5 * * * *" });
  assert.equal(cron.after(iso("2026-12-02T10:05:00Z")), iso("2026-12-02T10:10:00Z"));
  assert.equal(cron.atOrBefore(iso("2026-12-02T10:05:00Z")), iso("2026-12-02T10:05:00Z"));
  assert.equal(cron.atOrBefore(iso("2026-12-02T10:04:59.999Z")), iso("2026-12-02T10:00:00Z"));
  assert.throws(() => new Timetable({}), /needs cron or everyMs/);
  assert.throws(() => new Timetable({ everyMs: 0 }), /everyMs must be 1 or more/);
});

Deno.test("cron in Europe/Paris across the spring-forward gap: a fixed time runs once, at 03:00", () => {
  // 2026-03-29: at 02:00 CET (01:00Z) clocks go to 03:00 CEST; 02:30 does not exist that night
  const { clock, runs } = harness(
    { nightly: { task: "report", cron: "30 2 * * *", tz: "Europe/Paris" } },
    "2026-03-27T12:00:00Z",
  );
  clock.advanceTo(iso("2026-03-31T12:00:00Z"));
  assert.deepEqual(runs, [
    "nightly 2026-03-28T01:30:00.000Z", // 02:30 CET
    "nightly 2026-03-29T01:00:00.000Z", // 03:00 CEST: the first valid time after the gap
    "nightly 2026-03-30T00:30:00.000Z", // 02:30 CEST
    "nightly 2026-03-31T00:30:00.000Z",
  ]);
  assert.ok(clock.longest <= 60_000, "the scheduler never sleeps more than a minute");
});

Deno.test("cron in Europe/Paris across the fall-back hour: a fixed time once, an interval job on both hours", () => {
  // 2026-10-25: at 03:00 CEST (01:00Z) clocks go back to 02:00 CET; 02:00–02:59 happens twice
  const { clock, runs } = harness({
    nightly: { task: "report", cron: "30 2 * * *", tz: "Europe/Paris" },
    halfHourly: { task: "poll", cron: "0,30 * * * *", tz: "Europe/Paris" },
  }, "2026-10-24T23:45:00Z");
  clock.advanceTo(iso("2026-10-25T02:10:00Z"));
  assert.deepEqual(runs, [
    "halfHourly 2026-10-25T00:00:00.000Z", // 02:00 CEST
    "nightly 2026-10-25T00:30:00.000Z", // 02:30 CEST, and not again at 02:30 CET
    "halfHourly 2026-10-25T00:30:00.000Z", // 02:30 CEST (same slot: in the order of the file)
    "halfHourly 2026-10-25T01:00:00.000Z", // 02:00 CET
    "halfHourly 2026-10-25T01:30:00.000Z", // 02:30 CET
    "halfHourly 2026-10-25T02:00:00.000Z", // 03:00 CET
  ]);
});

Deno.test("cron in America/New_York: 09:00 local is 14:00Z in winter and 13:00Z in summer", () => {
  const { clock, runs } = harness(
    { morning: { task: "digest", cron: "0 9 * * *", tz: "America/New_York" } },
    "2026-03-06T12:00:00Z",
  );
  clock.advanceTo(iso("2026-03-10T00:00:00Z"));
  assert.deepEqual(runs, [
    "morning 2026-03-06T14:00:00.000Z",
    "morning 2026-03-07T14:00:00.000Z",
    "morning 2026-03-08T13:00:00.000Z", // DST began at 02:00 that morning
    "morning 2026-03-09T13:00:00.000Z",
  ]);
});

Deno.test("every runs on its grid, and lastRuns/nextRuns say where each schedule stands", () => {
  const { clock, runs, scheduler } = harness({ poll: { task: "feed", every: "10m" } }, "2026-12-02T10:03:00Z");
  assert.deepEqual(scheduler.lastRuns(), {});
  assert.deepEqual(scheduler.nextRuns(), { poll: iso("2026-12-02T10:10:00Z") });
  clock.advanceTo(iso("2026-12-02T11:00:00Z"));
  assert.deepEqual(runs, [
    "poll 2026-12-02T10:10:00.000Z",
    "poll 2026-12-02T10:20:00.000Z",
    "poll 2026-12-02T10:30:00.000Z",
    "poll 2026-12-02T10:40:00.000Z",
    "poll 2026-12-02T10:50:00.000Z",
    "poll 2026-12-02T11:00:00.000Z",
  ]);
  assert.deepEqual(scheduler.lastRuns(), { poll: iso("2026-12-02T11:00:00Z") });
  assert.deepEqual(scheduler.nextRuns(), { poll: iso("2026-12-02T11:10:00Z") });
});

Deno.test("six fields: seconds first", () => {
  const { clock, runs } = harness({ s: { task: "tick", cron: "*/20 * * * * *" } }, "2026-12-02T10:00:05Z");
  clock.advanceTo(iso("2026-12-02T10:01:00Z"));
  assert.deepEqual(runs, ["s 2026-12-02T10:00:20.000Z", "s 2026-12-02T10:00:40.000Z", "s 2026-12-02T10:01:00.000Z"]);
});

Deno.test("a missed window after downtime: skip waits for the next slot, run-once runs once now", () => {
  const section = {
    hourlySkip: { task: "report", cron: "0 * * * *" },
    hourlyOnce: { task: "report", cron: "0 * * * *", missed: "run-once" },
    everyOnce: { task: "feed", every: "10m", missed: "run-once" },
  };
  // the last runs were at 06:00 (and 06:10); the server comes back at 09:23
  const last = {
    hourlySkip: iso("2026-12-02T06:00:00Z"),
    hourlyOnce: iso("2026-12-02T06:00:00Z"),
    everyOnce: iso("2026-12-02T06:10:00Z"),
  };
  const { clock, runs, scheduler } = harness(section, "2026-12-02T09:23:00Z", last);
  assert.deepEqual(runs, [
    "hourlyOnce 2026-12-02T09:00:00.000Z catch-up", // the latest slot missed, once
    "everyOnce 2026-12-02T09:20:00.000Z catch-up",
  ]);
  assert.deepEqual(scheduler.lastRuns(), {
    hourlySkip: iso("2026-12-02T06:00:00Z"), // it skipped: its last run is still the one before the downtime
    hourlyOnce: iso("2026-12-02T09:00:00Z"),
    everyOnce: iso("2026-12-02T09:20:00Z"),
  });
  runs.length = 0;
  clock.advanceTo(iso("2026-12-02T10:00:00Z"));
  assert.deepEqual(runs, [
    "everyOnce 2026-12-02T09:30:00.000Z",
    "everyOnce 2026-12-02T09:40:00.000Z",
    "everyOnce 2026-12-02T09:50:00.000Z",
    "hourlySkip 2026-12-02T10:00:00.000Z",
    "hourlyOnce 2026-12-02T10:00:00.000Z",
    "everyOnce 2026-12-02T10:00:00.000Z",
  ]);
});

Deno.test("a short restart within the grace period is no missed run; no last run means no catch-up", () => {
  // down from 10:04:30 to 10:05:20: the 10:05 slot is 20 s late, within the 60 s grace
  const late = harness({ p: { task: "feed", every: "5m" } }, "2026-12-02T10:05:20Z", {
    p: iso("2026-12-02T10:00:00Z"),
  });
  assert.deepEqual(late.runs, ["p 2026-12-02T10:05:00.000Z"]);
  // the same with a 10 s grace: missed, and skipped
  const strict = harness({ p: { task: "feed", every: "5m" } }, "2026-12-02T10:05:20Z", {
    p: iso("2026-12-02T10:00:00Z"),
  }, {
    graceMs: 10_000,
  });
  assert.deepEqual(strict.runs, []);
  assert.deepEqual(strict.scheduler.nextRuns(), { p: iso("2026-12-02T10:10:00Z") });
  // no last run known (a first start, or lastRuns not kept): nothing to catch up, even with run-once
  const fresh = harness({ p: { task: "feed", every: "5m", missed: "run-once" } }, "2026-12-02T10:07:00Z", { other: 1 });
  assert.deepEqual(fresh.runs, []);
  assert.deepEqual(fresh.scheduler.lastRuns(), {});
});

Deno.test("a stalled event loop: one run at most; the latest slot runs if it is within the grace", () => {
  const { clock, runs } = harness({
    skip: { task: "t", every: "1s" },
    once: { task: "t", every: "1s", missed: "run-once" },
    skip5: { task: "t", every: "5m" },
    once5: { task: "t", every: "5m", missed: "run-once" },
  }, "2026-12-02T10:04:59.500Z");
  clock.advanceTo(iso("2026-12-02T10:05:00.000Z"));
  assert.deepEqual(runs, [
    "skip 2026-12-02T10:05:00.000Z",
    "once 2026-12-02T10:05:00.000Z",
    "skip5 2026-12-02T10:05:00.000Z",
    "once5 2026-12-02T10:05:00.000Z",
  ]);
  runs.length = 0;
  // 13 minutes without a turn of the event loop: the 1 s schedules run once, for their latest slot (0.2 s
  // late); the latest 5 min slot, 10:15, is 3 minutes late: missed
  clock.stallUntil(iso("2026-12-02T10:18:00.200Z"));
  assert.deepEqual(runs, [
    "once5 2026-12-02T10:15:00.000Z catch-up",
    "skip 2026-12-02T10:18:00.000Z",
    "once 2026-12-02T10:18:00.000Z",
  ]);
  runs.length = 0;
  clock.advanceTo(iso("2026-12-02T10:20:00.000Z"));
  assert.equal(runs.filter((r) => r.startsWith("skip ")).length, 120);
  assert.deepEqual(runs.filter((r) => r.includes("5 ")), [
    "skip5 2026-12-02T10:20:00.000Z",
    "once5 2026-12-02T10:20:00.000Z",
  ]);
});

Deno.test("several schedules due at once are submitted in the order of their slots", () => {
  const { clock, runs } = harness(
    {
      b: { task: "t", every: "1m", missed: "run-once" },
      a: { task: "t", cron: "30 * * * * *", missed: "run-once" },
    },
    "2026-12-02T10:00:00Z",
    { a: iso("2026-12-02T09:00:00Z"), b: iso("2026-12-02T09:00:00Z") },
  );
  // a's latest slot, 09:59:30, is 30 s late: within the grace, so a plain run, not a catch-up
  assert.deepEqual(runs, ["a 2026-12-02T09:59:30.000Z", "b 2026-12-02T10:00:00.000Z"]);
  assert.equal(clock.pending, 1);
});

Deno.test("start, stop, start again; an onDue that throws does not repeat its run nor stop the timer", () => {
  const clock = new FakeClock(iso("2026-12-02T10:00:30Z"));
  const seen: number[] = [];
  let fail = true;
  const scheduler = new Scheduler(specs({ p: { task: "t", every: "1m" } }), (_spec, dueAt) => {
    seen.push(dueAt);
    if (fail) throw new Error("submit failed");
  }, { clock });
  assert.equal(scheduler.running, false);
  assert.deepEqual(scheduler.nextRuns(), {});
  scheduler.start();
  assert.throws(() => scheduler.start(), /already started/);
  assert.throws(() => clock.advanceTo(iso("2026-12-02T10:01:00Z")), /submit failed/);
  assert.equal(clock.pending, 1, "the timer is set again");
  fail = false;
  clock.advanceTo(iso("2026-12-02T10:02:00Z"));
  assert.deepEqual(seen, [iso("2026-12-02T10:01:00Z"), iso("2026-12-02T10:02:00Z")]);
  scheduler.stop();
  assert.equal(scheduler.running, false);
  assert.equal(clock.pending, 0);
  clock.advanceTo(iso("2026-12-02T10:05:00Z"));
  assert.equal(seen.length, 2);
  scheduler.start(scheduler.lastRuns());
  clock.advanceTo(iso("2026-12-02T10:06:00Z"));
  // back at 10:05 with the last run at 10:02: the 10:05 slot is on time
  assert.deepEqual(seen.slice(2), [iso("2026-12-02T10:05:00Z"), iso("2026-12-02T10:06:00Z")]);
  scheduler.stop();
});

Deno.test("the real clock: a 1 s schedule fires within a few seconds", async () => {
  const fired = Promise.withResolvers<number>();
  const scheduler = new Scheduler(specs({ p: { task: "t", every: "1s" } }), (_s, dueAt) => fired.resolve(dueAt), {
    clock: REAL_CLOCK,
  });
  scheduler.start();
  try {
    const dueAt = await fired.promise;
    assert.equal(dueAt % 1000, 0);
    assert.ok(Date.now() >= dueAt);
  } finally {
    scheduler.stop();
  }
});

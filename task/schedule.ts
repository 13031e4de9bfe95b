/**
 * Periodic tasks: the `schedules` map of a `serve --config` file, and the {@linkcode Scheduler} that
 * submits a run of each schedule's task when it is due.
 *
 * ```json
 * {
 *   "schedules": {
 *     "nightly": { "task": "report", "data": { "kind": "daily" }, "cron": "30 2 * * *", "tz": "Europe/Paris" },
 *     "poll":    { "task": "fetch-feed", "every": "10m", "missed": "run-once", "priority": -10 }
 *   }
 * }
 * ```
 *
 * | key        | what                                                                                    | default   |
 * | ---------- | --------------------------------------------------------------------------------------- | --------- |
 * | `task`     | the task to run (a name of the `tasks` map)                                             | required  |
 * | `data`     | the data of each run (any JSON)                                                         | `null`    |
 * | `cron`     | when: a cron expression: 5 fields (`"0 * * * *"`), 6 with seconds first, or `@daily`… | `cron` or |
 * | `tz`       | the time zone of `cron`: an IANA name such as `"Europe/Paris"`                          | `"UTC"`   |
 * | `every`    | when: a fixed interval of at least 1 s: `"10m"`, `"1h30m"`, or milliseconds             | `every`   |
 * | `missed`   | runs missed while down: `"skip"` them, or `"run-once"` now for them all                 | `"skip"`  |
 * | `priority` | the priority of each run, from -100 to 100                                              | `0`       |
 *
 * **When.** `cron` follows the usual rules (a day matches when the day of the month *or* the day of the
 * week does, as in Vixie cron), in the time zone `tz`. Across a daylight-saving change, a job at a fixed
 * time (`30 2 * * *`) runs once: at the first valid time after a spring-forward gap, and once on the
 * repeated hour of the fall; an interval job (`0,30 * * * *`) runs on the times that exist, both
 * occurrences of a repeated hour included. `every` runs on fixed multiples of its interval since the
 * Unix epoch (`"10m"` at :00, :10, :20 UTC…), whenever the server started.
 *
 * **Missed runs.** When the scheduler gets to a schedule whose slots have passed (the server was down,
 * or its event loop stalled), at most one run is submitted, for the latest slot passed; the earlier ones
 * are dropped. If that latest slot is at most `graceMs` late (default 60 s), it runs as usual. If it is
 * later than that, it was *missed*: with `"skip"` it is dropped too and the schedule waits for its next
 * slot; with `"run-once"` it runs at once (`catchUp: true`, `dueAt` the missed slot), then the schedule
 * waits for its next slot. So `"skip"` matters for schedules whose period is longer than the grace, and
 * after a stall across many slots of an `every: "1s"`, there is one run. Runs due at once are submitted
 * in the order of their slots, then in the order of the file.
 *
 * Knowing that runs were missed while the server was down takes the time of each schedule's last run:
 * keep {@linkcode Scheduler.lastRuns} (in the journal, say) and give it back to
 * {@linkcode Scheduler.start}. Without it, a schedule starts from now, with nothing to catch up.
 *
 * **The cron parser** is `croner` (npm, version 11): no dependencies, time zones through `Intl` (no
 * time-zone database to ship), daylight-saving rules documented and tested, and it runs under Deno
 * with `nodeModulesDir: "none"` as a plain ES module. `cron-parser` 5, the other candidate, pulls in
 * `luxon` for its time zones.
 *
 * @module
 */
import { Cron } from "croner";
import { parseDuration, parsePriority, type Result } from "./timing.ts";

/** What a schedule name may look like. */
export const SCHEDULE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** What a schedule does about runs missed while the server was down (or stalled). */
export const MISSED_POLICIES = ["skip", "run-once"] as const;
/** One of {@linkcode MISSED_POLICIES}. */
export type MissedPolicy = (typeof MISSED_POLICIES)[number];
/** The shortest `every`. */
export const MIN_EVERY_MS = 1000;
/** The default `graceMs` of a {@linkcode Scheduler}: how late a run may be and not count as missed. */
export const DEFAULT_GRACE_MS = 60_000;

const KEYS = ["task", "data", "cron", "tz", "every", "missed", "priority"];

/** One schedule, read from the config file. */
export interface ScheduleSpec {
  /** The schedule's name: its key in the `schedules` map. */
  name: string;
  /** The task each run submits. */
  task: string;
  /** The data of each run. */
  data: unknown;
  /** The cron expression, when the schedule has one. */
  cron?: string;
  /** The time zone of `cron`, as `Intl` names it (`"Europe/Paris"`, `"UTC"`). */
  tz?: string;
  /** The interval, when the schedule has one instead of `cron`. */
  everyMs?: number;
  missed: MissedPolicy;
  priority: number;
  /** Where it was written, for messages: `schedules.nightly`. */
  where: string;
}

/**
 * The JSON Schema of the `schedules` map, for editors. {@linkcode parseSchedules} checks more, and says
 * more.
 *
 * @example
 * ```ts
 * import { SCHEDULES_JSON_SCHEMA } from "./schedule.ts";
 * import assert from "node:assert/strict";
 * assert.equal(SCHEDULES_JSON_SCHEMA.type, "object");
 * ```
 */
export const SCHEDULES_JSON_SCHEMA = {
  type: "object",
  description: "Schedule names to periodic runs of a task: a cron expression or a fixed interval",
  propertyNames: { pattern: SCHEDULE_NAME.source },
  additionalProperties: {
    type: "object",
    required: ["task"],
    properties: {
      task: { type: "string", description: "the task to run, a name of the tasks map" },
      data: { description: "the data of each run; default null" },
      cron: { type: "string", description: 'a cron expression: 5 fields, or 6 with seconds first; e.g. "*/5 * * * *"' },
      tz: { type: "string", description: 'the time zone of cron, an IANA name such as "Europe/Paris"; default UTC' },
      every: {
        anyOf: [{ type: "integer", minimum: MIN_EVERY_MS }, { type: "string" }],
        description: 'a fixed interval of at least 1s, such as "10m" or "1h30m" (or milliseconds)',
      },
      missed: { enum: [...MISSED_POLICIES], description: "after downtime: skip the missed runs, or run once now" },
      priority: { type: "integer", minimum: -100, maximum: 100, description: "the priority of each run; default 0" },
    },
    additionalProperties: false,
    oneOf: [{ required: ["cron"] }, { required: ["every"] }],
  },
} as const;

/** What {@linkcode parseSchedules} checks against. */
export interface ParseSchedulesOptions {
  /** The task names a schedule may name (the `tasks` map's); unchecked when not given. */
  tasks?: readonly string[];
  /** The current time, to check that a cron expression matches some time ahead; default `Date.now()`. */
  now?: number;
}

/**
 * Reads the `schedules` section of the config file. A message names the first mistake's key as written
 * in the file (`schedules.nightly.cron: …`) and says what to write instead.
 *
 * @example
 * ```ts
 * import { parseSchedules } from "./schedule.ts";
 * import assert from "node:assert/strict";
 * const section = { nightly: { task: "report", cron: "30 2 * * *", tz: "Europe/Paris" } };
 * const got = parseSchedules(section, { tasks: ["report"] });
 * assert.ok(got.ok);
 * if (got.ok) assert.deepEqual(got.value[0], {
 *   name: "nightly", task: "report", data: null, cron: "30 2 * * *", tz: "Europe/Paris",
 *   missed: "skip", priority: 0, where: "schedules.nightly",
 * });
 * const bad = parseSchedules({ nightly: { task: "report", cron: "30 2 * *" } });
 * assert.match(!bad.ok ? bad.message : "", /^schedules\.nightly\.cron: "30 2 \* \*" is not a cron expression/);
 * ```
 */
export function parseSchedules(section: unknown, options: ParseSchedulesOptions = {}): Result<ScheduleSpec[]> {
  if (!isObject(section)) {
    return fail("schedules", `must be an object of schedule names to schedules, e.g. {"nightly": {"task": …}}`);
  }
  const specs: ScheduleSpec[] = [];
  for (const [name, raw] of Object.entries(section)) {
    const one = parseSchedule(name, raw, options);
    if (!one.ok) return one;
    specs.push(one.value);
  }
  return { ok: true, value: specs };
}

function parseSchedule(name: string, raw: unknown, options: ParseSchedulesOptions): Result<ScheduleSpec> {
  const at = `schedules.${name}`;
  if (!SCHEDULE_NAME.test(name)) {
    return fail(at, "a schedule name is 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit");
  }
  if (!isObject(raw)) {
    return fail(
      at,
      `must be an object, e.g. {"task": "report", "cron": "0 * * * *"} or {"task": "report", "every": "10m"}`,
    );
  }
  for (const key of Object.keys(raw)) {
    if (!KEYS.includes(key)) {
      return fail(`${at}.${key}`, `is not a setting of a schedule; its settings are ${KEYS.join(", ")}`);
    }
  }
  if (typeof raw.task !== "string" || raw.task === "") {
    return fail(
      `${at}.task`,
      `must name the task to run, such as "report"${raw.task === undefined ? "" : `, not ${show(raw.task)}`}`,
    );
  }
  if (options.tasks && !options.tasks.includes(raw.task)) {
    const known = options.tasks.length ? `; the tasks are ${options.tasks.join(", ")}` : "";
    return fail(`${at}.task`, `${show(raw.task)} is not a task of the "tasks" map${known}`);
  }
  const spec: ScheduleSpec = {
    name,
    task: raw.task,
    data: raw.data === undefined ? null : raw.data,
    missed: "skip",
    priority: 0,
    where: at,
  };
  if (raw.cron !== undefined && raw.every !== undefined) {
    return fail(at, `give "cron" or "every", not both`);
  }
  if (raw.cron === undefined && raw.every === undefined) {
    return fail(at, `say when: give "cron" (such as "*/5 * * * *") or "every" (such as "10m")`);
  }
  if (raw.every !== undefined) {
    if (raw.tz !== undefined) {
      return fail(`${at}.tz`, `applies to "cron" only: "every" runs at fixed intervals since the Unix epoch`);
    }
    const every = parseDuration(raw.every, "every");
    if (!every.ok) return fail(`${at}.every`, every.message.replace(/^"every" /, ""));
    if (every.value < MIN_EVERY_MS) {
      return fail(`${at}.every`, `${show(raw.every)} is less than 1s; give 1s or more, or a "cron" with seconds`);
    }
    spec.everyMs = every.value;
  } else {
    let tz = "UTC";
    if (raw.tz !== undefined) {
      const zone = timeZone(raw.tz);
      if (!zone.ok) return fail(`${at}.tz`, zone.message);
      tz = zone.value;
    }
    if (typeof raw.cron !== "string") {
      return fail(`${at}.cron`, `must be a cron expression such as "*/5 * * * *", not ${show(raw.cron)}`);
    }
    const cron = compileCron(raw.cron, tz, options.now ?? Date.now());
    if (!cron.ok) return fail(`${at}.cron`, cron.message);
    spec.cron = raw.cron;
    spec.tz = tz;
  }
  if (raw.missed !== undefined) {
    // widened to string[] so that includes() takes any string
    if (typeof raw.missed !== "string" || !(MISSED_POLICIES as readonly string[]).includes(raw.missed)) {
      return fail(
        `${at}.missed`,
        `must be "skip" (drop the runs missed while the server was down) or "run-once" (one run at once), not ${
          show(raw.missed)
        }`,
      );
    }
    spec.missed = raw.missed as MissedPolicy; // checked against MISSED_POLICIES just above
  }
  if (raw.priority !== undefined) {
    const p = typeof raw.priority === "number" ? parsePriority(raw.priority) : undefined;
    if (!p?.ok) {
      return fail(
        `${at}.priority`,
        `must be a whole number from -100 to 100 (higher runs sooner), not ${show(raw.priority)}`,
      );
    }
    spec.priority = p.value;
  }
  return { ok: true, value: spec };
}

function timeZone(value: unknown): Result<string> {
  const example = `an IANA time zone such as "Europe/Paris", "America/New_York" or "UTC"`;
  if (typeof value !== "string" || value.trim() === "") {
    return { ok: false, message: `must be ${example}, not ${show(value)}` };
  }
  if (/^[+-]/.test(value.trim())) {
    return {
      ok: false,
      message: `${show(value)} is an offset, not a time zone: give ${example} (or "Etc/GMT-1" for +01:00)`,
    };
  }
  try {
    return { ok: true, value: new Intl.DateTimeFormat("en-US", { timeZone: value.trim() }).resolvedOptions().timeZone };
  } catch {
    return { ok: false, message: `${show(value)} is not a time zone this server knows: give ${example}` };
  }
}

function compileCron(expression: string, tz: string, now: number): Result<Cron> {
  const help =
    `write 5 fields (minute hour day-of-month month day-of-week), such as "*/5 * * * *" or "30 2 * * 1-5", ` +
    `or 6 with seconds first`;
  let cron: Cron;
  try {
    cron = new Cron(expression, { timezone: tz, mode: "5-or-6-parts" });
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).replace(/^CronPattern: /, "").replace(/\.$/, "");
    return { ok: false, message: `${show(expression)} is not a cron expression (${why}): ${help}` };
  }
  let next: Date | null;
  try {
    next = cron.nextRun(new Date(now));
  } catch (e) {
    return {
      ok: false,
      message: `${show(expression)} cannot be computed: ${e instanceof Error ? e.message : String(e)}`,
    };
  }
  if (next === null) return { ok: false, message: `${show(expression)} never matches a date to come: ${help}` };
  return { ok: true, value: cron };
}

/**
 * When a schedule's runs fall: the slot after a time, and the last slot at or before one.
 *
 * @example
 * ```ts
 * import { parseSchedules, Timetable } from "./schedule.ts";
 * import assert from "node:assert/strict";
 * const got = parseSchedules({ poll: { task: "feed", every: "10m" } });
 * assert.ok(got.ok);
 * if (got.ok) {
 *   const t = new Timetable(got.value[0]);
 *   assert.equal(t.after(Date.UTC(2026, 11, 2, 10, 3)), Date.UTC(2026, 11, 2, 10, 10));
 *   assert.equal(t.atOrBefore(Date.UTC(2026, 11, 2, 10, 10)), Date.UTC(2026, 11, 2, 10, 10));
 * }
 * ```
 */
export class Timetable {
  /** The first slot strictly after `t` (ms since the epoch), or `undefined` if there is none. */
  readonly after: (t: number) => number | undefined;
  /** The last slot at or before `t`, or `undefined` if there is none. */
  readonly atOrBefore: (t: number) => number | undefined;

  constructor(spec: Pick<ScheduleSpec, "cron" | "tz" | "everyMs">) {
    const every = spec.everyMs;
    if (every !== undefined) {
      if (!(every >= 1)) throw new RangeError(`Timetable: everyMs must be 1 or more, not ${every}`);
      this.after = (t) => (Math.floor(t / every) + 1) * every;
      this.atOrBefore = (t) => Math.floor(t / every) * every;
    } else if (spec.cron !== undefined) {
      const cron = new Cron(spec.cron, { timezone: spec.tz ?? "UTC", mode: "5-or-6-parts" });
      this.after = (t) => cron.nextRun(new Date(t))?.getTime();
      // previousRuns gives the slots strictly before its reference: 1 ms past t takes t itself in
      this.atOrBefore = (t) => cron.previousRuns(1, new Date(t + 1))[0]?.getTime();
    } else {
      throw new RangeError("Timetable: a schedule needs cron or everyMs");
    }
  }
}

/** The time source and timers of a {@linkcode Scheduler}; tests give a fake one. */
export interface SchedulerClock {
  /** The current time, in ms since the epoch. */
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

/** The real clock: `Date.now` and `setTimeout`. */
export const REAL_CLOCK: SchedulerClock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as number), // a handle from setTimer above
};

/** How a due run is given to the {@linkcode Scheduler}'s callback. */
export interface DueRun {
  /** The slot this run is for, in ms since the epoch. */
  dueAt: number;
  /** `true` for the one run of `missed: "run-once"` after missed slots; `dueAt` is then the latest one. */
  catchUp: boolean;
}

/** Called for each run that comes due: submit `schedule.task` with `schedule.data`. */
export type DueCallback = (schedule: ScheduleSpec, dueAt: number, run: DueRun) => void;

/** How a {@linkcode Scheduler} runs. */
export interface SchedulerOptions {
  /** Default {@linkcode REAL_CLOCK}. */
  clock?: SchedulerClock;
  /** How late a run may come and still not count as missed; default {@linkcode DEFAULT_GRACE_MS}. */
  graceMs?: number;
  /**
   * The longest the scheduler sleeps before it looks at the clock again (default 60 s), so that a
   * change of the wall clock, or a machine's sleep, is noticed within that time.
   */
  maxSleepMs?: number;
}

interface State {
  spec: ScheduleSpec;
  table: Timetable;
  /** The next slot, or undefined when there is none (a cron with no date to come). */
  next: number | undefined;
  /** The dueAt of the last run given to the callback (or given to start). */
  last: number | undefined;
}

/**
 * Submits each schedule's runs when they come due, through `onDue`. See the module's doc for the rules.
 * The state of a schedule moves on before `onDue` is called for it, so an `onDue` that throws does not
 * repeat the run; the error goes on up (from a timer: an uncaught error), after the timer is set again.
 *
 * @example
 * ```ts
 * import { parseSchedules, Scheduler, type SchedulerClock } from "./schedule.ts";
 * import assert from "node:assert/strict";
 * const specs = parseSchedules({ poll: { task: "feed", every: "10m", missed: "run-once" } });
 * if (!specs.ok) throw new Error(specs.message);
 * // a clock the example moves by hand
 * let now = Date.UTC(2026, 11, 2, 10, 3);
 * let timer: (() => void) | undefined;
 * const clock: SchedulerClock = {
 *   now: () => now,
 *   setTimer: (fn) => (timer = fn),
 *   clearTimer: () => (timer = undefined),
 * };
 * const runs: string[] = [];
 * const s = new Scheduler(specs.value, (spec, dueAt, run) => {
 *   runs.push(`${spec.task} ${new Date(dueAt).toISOString()}${run.catchUp ? " catch-up" : ""}`);
 * }, { clock });
 * // down since the run of 08:00: one catch-up run now, then 10:10
 * s.start({ poll: Date.UTC(2026, 11, 2, 8) });
 * now = Date.UTC(2026, 11, 2, 10, 10);
 * timer?.();
 * assert.deepEqual(runs, ["feed 2026-12-02T10:00:00.000Z catch-up", "feed 2026-12-02T10:10:00.000Z"]);
 * assert.deepEqual(s.lastRuns(), { poll: Date.UTC(2026, 11, 2, 10, 10) });
 * s.stop();
 * ```
 */
export class Scheduler {
  readonly #states: State[];
  readonly #onDue: DueCallback;
  readonly #clock: SchedulerClock;
  readonly #graceMs: number;
  readonly #maxSleepMs: number;
  #timer: unknown;
  #running = false;

  constructor(specs: readonly ScheduleSpec[], onDue: DueCallback, options: SchedulerOptions = {}) {
    this.#states = specs.map((spec) => ({ spec, table: new Timetable(spec), next: undefined, last: undefined }));
    this.#onDue = onDue;
    this.#clock = options.clock ?? REAL_CLOCK;
    this.#graceMs = Math.max(0, options.graceMs ?? DEFAULT_GRACE_MS);
    this.#maxSleepMs = Math.max(1, options.maxSleepMs ?? 60_000);
  }

  /** Whether the scheduler is started. */
  get running(): boolean {
    return this.#running;
  }

  /**
   * Computes each schedule's next run, submits at once the runs that `lastRuns` shows were missed (as
   * their `missed` says), and starts the timer. `lastRuns` is what {@linkcode Scheduler.lastRuns} gave
   * before the restart: schedule names to the time of their last run; names of schedules gone from the
   * config are ignored, and a schedule without one starts from now (no catch-up).
   */
  start(lastRuns: Readonly<Record<string, number>> = {}): void {
    if (this.#running) throw new Error("Scheduler: already started");
    this.#running = true;
    const now = this.#clock.now();
    for (const state of this.#states) {
      const last = Object.hasOwn(lastRuns, state.spec.name) ? lastRuns[state.spec.name] : undefined;
      state.last = typeof last === "number" && Number.isFinite(last) ? last : undefined;
      state.next = state.table.after(state.last ?? now);
    }
    this.#wake();
  }

  /** Stops the timer. `start` may be called again. */
  stop(): void {
    this.#running = false;
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  /** Schedule names to the time (ms since the epoch) of their last run: keep it for the next `start`. */
  lastRuns(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.#states) if (s.last !== undefined) out[s.spec.name] = s.last;
    return out;
  }

  /** Schedule names to the time of their next run (absent: none to come). Empty before `start`. */
  nextRuns(): Record<string, number> {
    const out: Record<string, number> = {};
    if (!this.#running) return out;
    for (const s of this.#states) if (s.next !== undefined) out[s.spec.name] = s.next;
    return out;
  }

  /** Submits what is due, then sets the timer for what comes next. */
  #wake(): void {
    this.#timer = undefined;
    if (!this.#running) return;
    try {
      this.#submitDue();
    } finally {
      if (this.#running) this.#arm();
    }
  }

  #submitDue(): void {
    const now = this.#clock.now();
    const due: [State, DueRun][] = [];
    for (const state of this.#states) {
      if (state.next === undefined || state.next > now) continue;
      const latest = Math.max(state.table.atOrBefore(now) ?? state.next, state.next);
      let next = state.table.after(latest);
      for (let i = 0; next !== undefined && next <= now && i < 1000; i++) next = state.table.after(next);
      state.next = next;
      if (now - latest <= this.#graceMs) {
        due.push([state, { dueAt: latest, catchUp: false }]);
      } else if (state.spec.missed === "run-once") {
        due.push([state, { dueAt: latest, catchUp: true }]);
      }
    }
    due.sort((a, b) => a[1].dueAt - b[1].dueAt);
    for (const [state, run] of due) state.last = run.dueAt;
    for (const [state, run] of due) this.#onDue(state.spec, run.dueAt, run);
  }

  #arm(): void {
    let next = Infinity;
    for (const s of this.#states) if (s.next !== undefined && s.next < next) next = s.next;
    if (next === Infinity) return;
    const ms = Math.min(Math.max(0, next - this.#clock.now()), this.#maxSleepMs);
    this.#timer = this.#clock.setTimer(() => this.#wake(), ms);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fail(key: string, what: string): { ok: false; message: string } {
  return { ok: false, message: `${key}: ${what}` };
}

function show(value: unknown): string {
  let text: string;
  try {
    text = value === undefined ? "nothing" : typeof value === "number" ? String(value) : JSON.stringify(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

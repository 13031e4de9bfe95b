/**
 * Rate limits on task starts: `"100/s"`, `"10/min"`, `"1000/h"`, for a whole task or per key (one SMS a
 * minute per phone number: the key `"{phone}"`, a template over the task's data, see
 * {@linkcode compileTemplate}).
 *
 * **The rule** is a token bucket, computed as GCRA (the generic cell rate algorithm): a limit of `n`
 * per period with a burst of `b` (default `n`) holds `b` start slots, and gives one back every
 * period / `n`. `"100/s"` allows 100 starts at once, then one every 10 ms; `"1/min"` one a minute;
 * `{"limit": "10/min", "burst": 1}` one every 6 s, never two closer. One number per key holds the whole
 * state: its *theoretical arrival time* (TAT), the time its bucket is full again. A start at `now` is
 * allowed when `TAT - (b - 1)·period/n ≤ now` (that is the key's next free slot), and moves the TAT
 * to `max(TAT, now) + period/n`.
 *
 * **Bounded memory.** A key whose TAT has passed is the same as a key never seen (a full bucket), so it
 * is forgotten: each start looks at the two keys that started longest ago and drops them if idle, and
 * past `maxKeys` (default 100,000) keys the one that started longest ago is dropped even if it is not
 * idle (that key may then start a little early). {@linkcode RateLimiter.sweep} drops every idle key.
 *
 * **Kept across a restart** with {@linkcode RateLimiter.export} and {@linkcode RateLimiter.import}, as
 * JSON:
 *
 * ```json
 * { "version": 1, "limit": "1/min", "burst": 1, "keys": [["+33612345678", 1796205660000]] }
 * ```
 *
 * `keys` lists each key that is not idle, with its TAT in ms since the epoch (an array of pairs, not
 * an object, so that any text can be a key). The key of a limit without a key template is `""`. The
 * key's next free slot is `TAT - (burst - 1) · period / count`. Imported into a limiter whose limit has
 * changed, the slots each key had in use still count, at the new limit's pace: `TAT - now` is scaled by
 * the new period / count over the old.
 *
 * @module
 */
import { compileTemplate, type Result, type Template } from "./timing.ts";

/** A rate: `count` starts per `periodMs`. */
export interface Rate {
  count: number;
  periodMs: number;
  /** As written: `"10/min"`. */
  text: string;
}

const PERIODS: Record<string, number> = { s: 1000, min: 60_000, h: 3_600_000 };
/** The largest count a rate may have. */
export const MAX_RATE_COUNT = 1_000_000_000;
/** The default `maxKeys` of a {@linkcode RateLimiter}: the most keys it remembers. */
export const DEFAULT_MAX_KEYS = 100_000;

/**
 * Reads a rate: a whole number from 1 to {@linkcode MAX_RATE_COUNT}, `/`, and `s`, `min` or `h`.
 * `field` names the value in the message.
 *
 * @example
 * ```ts
 * import { parseRate } from "./rate.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseRate("10/min"), { ok: true, value: { count: 10, periodMs: 60_000, text: "10/min" } });
 * assert.equal(parseRate("10 per minute").ok, false);
 * ```
 */
export function parseRate(value: unknown, field = "rate"): Result<Rate> {
  const example = `a rate such as "100/s", "10/min" or "1000/h"`;
  if (typeof value !== "string") return fail(`${field} must be ${example}, not ${show(value)}`);
  const m = /^\s*(\d+)\s*\/\s*([a-z]+)\s*$/.exec(value);
  if (!m) return fail(`${field} must be ${example}, not ${show(value)}`);
  const periodMs = PERIODS[m[2]];
  if (periodMs === undefined) {
    return fail(`${field} ${show(value)} has an unknown period "${m[2]}"; use s, min or h, such as "${m[1]}/min"`);
  }
  const count = Number(m[1]);
  if (count < 1 || count > MAX_RATE_COUNT) {
    return fail(`${field} ${show(value)}: the count must be from 1 to ${MAX_RATE_COUNT}`);
  }
  return { ok: true, value: { count, periodMs, text: `${count}/${m[2]}` } };
}

/** One rate limit of a task: its rate, its burst, and the template of its key (none: one for the task). */
export interface RateLimitSpec {
  rate: Rate;
  /** How many starts at once, from 1 to the rate's count; default the count. */
  burst: number;
  /** The key template, such as `"{phone}"`: a limit per key. */
  key?: Template;
}

const SPEC_KEYS = ["limit", "burst", "key"];

/**
 * Reads the rate limits of a task from its config: a rate (`"100/s"`), an object
 * `{"limit": "1/min", "key": "{phone}", "burst": 1}` (`key` and `burst` optional), or an array of
 * these (each applies: `["100/s", {"limit": "1/min", "key": "{phone}"}]`). Messages name the key as
 * written, from `at` (such as `"tasks.sms.rate"`).
 *
 * @example
 * ```ts
 * import { parseRateLimits } from "./rate.ts";
 * import assert from "node:assert/strict";
 * const got = parseRateLimits(["100/s", { limit: "1/min", key: "{phone}" }], "tasks.sms.rate");
 * assert.ok(got.ok);
 * if (got.ok) {
 *   assert.equal(got.value[0].burst, 100);
 *   assert.equal(got.value[1].key?.source, "{phone}");
 * }
 * const bad = parseRateLimits({ limit: "1/min", burst: 5 }, "tasks.sms.rate");
 * assert.equal(bad.ok, false);
 * assert.match(!bad.ok ? bad.message : "", /^tasks\.sms\.rate\.burst: must be a whole number from 1 to 1/);
 * ```
 */
export function parseRateLimits(value: unknown, at: string): Result<RateLimitSpec[]> {
  if (Array.isArray(value)) {
    if (value.length === 0) return fail(`${at}: give at least one limit, such as "100/s"`);
    const specs: RateLimitSpec[] = [];
    for (let i = 0; i < value.length; i++) {
      const one = parseRateLimit(value[i], `${at}[${i}]`);
      if (!one.ok) return one;
      specs.push(one.value);
    }
    return { ok: true, value: specs };
  }
  const one = parseRateLimit(value, at);
  return one.ok ? { ok: true, value: [one.value] } : one;
}

function parseRateLimit(value: unknown, at: string): Result<RateLimitSpec> {
  if (typeof value === "string") {
    const rate = parseRate(value, `${at}:`);
    return rate.ok ? { ok: true, value: { rate: rate.value, burst: rate.value.count } } : rate;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail(`${at}: must be a rate such as "100/s", or {"limit": "1/min", "key": "{phone}"}, not ${show(value)}`);
  }
  const o = value as Record<string, unknown>; // a non-null, non-array object
  for (const k of Object.keys(o)) {
    if (!SPEC_KEYS.includes(k)) {
      return fail(`${at}.${k}: is not a setting of a rate limit; its settings are limit, burst, key`);
    }
  }
  if (o.limit === undefined) return fail(`${at}.limit: is missing: give a rate such as "1/min"`);
  const rate = parseRate(o.limit, `${at}.limit:`);
  if (!rate.ok) return rate;
  const spec: RateLimitSpec = { rate: rate.value, burst: rate.value.count };
  if (o.burst !== undefined) {
    const b = o.burst;
    if (typeof b !== "number" || !Number.isInteger(b) || b < 1 || b > rate.value.count) {
      return fail(
        `${at}.burst: must be a whole number from 1 to ${rate.value.count} (the limit's count), not ${show(b)}`,
      );
    }
    spec.burst = b;
  }
  if (o.key !== undefined) {
    if (typeof o.key !== "string") {
      return fail(`${at}.key: must be a key template such as "{phone}", not ${show(o.key)}`);
    }
    const key = compileTemplate(o.key, `${at}.key`);
    if (!key.ok) return key;
    spec.key = key.value;
  }
  return { ok: true, value: spec };
}

/** What a {@linkcode RateLimiter} remembers, as JSON (see the module's doc). */
export interface RateLimiterState {
  version: 1;
  /** The limit the state was kept under, as written: `"1/min"`. */
  limit: string;
  burst: number;
  /** Each key that is not idle, with its TAT (ms since the epoch). */
  keys: [string, number][];
}

/** How a {@linkcode RateLimiter} is set up, besides its limit. */
export interface RateLimiterOptions {
  /** The current time in ms since the epoch; default `Date.now`. A wall clock, so that state can be kept. */
  clock?: () => number;
  /** The most keys remembered; default {@linkcode DEFAULT_MAX_KEYS}. */
  maxKeys?: number;
  /** What is limited, for messages: the task's name, say. */
  name?: string;
}

/**
 * The rate limit of one task, for each of its keys: may a run start now, and when is the next slot.
 *
 * @example
 * ```ts
 * import { parseRateLimits, RateLimiter } from "./rate.ts";
 * import assert from "node:assert/strict";
 * const limits = parseRateLimits({ limit: "1/min", key: "{phone}" }, "tasks.sms.rate");
 * if (!limits.ok) throw new Error(limits.message);
 * let now = 1_000_000;
 * const sms = new RateLimiter(limits.value[0], { clock: () => now, name: "sms" });
 * const key = sms.keyFor({ phone: "+33612345678" });
 * assert.deepEqual(key, { ok: true, value: "+33612345678" });
 * assert.ok(sms.tryStart("+33612345678"));
 * assert.equal(sms.mayStart("+33612345678"), false); // one a minute
 * assert.equal(sms.nextSlot("+33612345678"), now + 60_000);
 * assert.ok(sms.tryStart("+15551234567")); // another phone number has its own slot
 * now += 60_000;
 * assert.ok(sms.tryStart("+33612345678"));
 * ```
 */
export class RateLimiter {
  /** The rate: `count` starts per `periodMs`. */
  readonly rate: Rate;
  /** How many starts at once (per key). */
  readonly burst: number;
  /** The key template, when the limit is per key. */
  readonly key: Template | undefined;
  /** What is limited, for messages. */
  readonly name: string | undefined;
  readonly #clock: () => number;
  readonly #maxKeys: number;
  /** period / count: the time one slot takes to come back. */
  readonly #interval: number;
  /** (burst - 1) · interval: how far ahead of now a key's TAT may be and still start. */
  readonly #tolerance: number;
  /** key → TAT, in the order of their last start (oldest first). */
  readonly #tats = new Map<string, number>();

  constructor(limit: RateLimitSpec, options: RateLimiterOptions = {}) {
    const { rate, burst } = limit;
    if (!Number.isInteger(burst) || burst < 1 || burst > rate.count) {
      throw new RangeError(`RateLimiter: burst must be a whole number from 1 to ${rate.count}, not ${burst}`);
    }
    this.rate = rate;
    this.burst = burst;
    this.key = limit.key;
    this.name = options.name;
    this.#clock = options.clock ?? Date.now;
    this.#maxKeys = Math.max(1, options.maxKeys ?? DEFAULT_MAX_KEYS);
    this.#interval = rate.periodMs / rate.count;
    this.#tolerance = (burst - 1) * this.#interval;
  }

  /** How many keys are remembered (those not known to be idle). */
  get size(): number {
    return this.#tats.size;
  }

  /**
   * The key of a task with `data`: the key template filled in, or `""` for a limit without one. A
   * message names a field the data lacks: check it before accepting the task.
   */
  keyFor(data: unknown): Result<string> {
    return this.key ? this.key.render(data) : { ok: true, value: "" };
  }

  /** Whether a run with `key` may start now. */
  mayStart(key = ""): boolean {
    return this.nextSlot(key) <= this.#clock();
  }

  /** When a run with `key` may start, in ms since the epoch: now, or later. */
  nextSlot(key = ""): number {
    const now = this.#clock();
    const tat = this.#tats.get(key);
    if (tat === undefined) return now;
    const slot = tat - this.#tolerance;
    // the interval can be a fraction of a ms: a slot within a µs of now is now
    return slot <= now + 1e-3 ? now : Math.ceil(slot);
  }

  /** How long a run with `key` must wait for a slot, in ms: 0 when it may start now. */
  waitFor(key = ""): number {
    return this.nextSlot(key) - this.#clock();
  }

  /** Takes a slot for a run with `key` if one is free now; says whether it did. */
  tryStart(key = ""): boolean {
    const now = this.#clock();
    const tat = this.#tats.get(key);
    if (tat !== undefined && tat - this.#tolerance > now + 1e-3) return false;
    this.#tats.delete(key); // re-inserted last: the map stays in the order of last start
    this.#tats.set(key, Math.max(tat ?? now, now) + this.#interval);
    this.#forget(now);
    return true;
  }

  /** One line saying what this limit is, for a waiting task: `sms: 1/min per key "+33612345678"`. */
  describe(key = ""): string {
    const what = `${this.name ? `${this.name}: ` : ""}${this.rate.text}`;
    const burst = this.burst === this.rate.count ? "" : ` (burst ${this.burst})`;
    return this.key ? `${what}${burst} per key ${JSON.stringify(key)}` : `${what}${burst}`;
  }

  /** Forgets every idle key. O(keys). */
  sweep(): void {
    const now = this.#clock();
    for (const [key, tat] of this.#tats) if (tat <= now) this.#tats.delete(key);
  }

  /** The state to keep across a restart: every key that is not idle (see the module's doc). */
  export(): RateLimiterState {
    const now = this.#clock();
    const keys: [string, number][] = [];
    for (const [key, tat] of this.#tats) if (tat > now) keys.push([key, Math.ceil(tat)]);
    return { version: 1, limit: this.rate.text, burst: this.burst, keys };
  }

  /**
   * Takes back a state from {@linkcode RateLimiter.export} (parsed JSON), on top of what it holds. Idle
   * keys are skipped; under a changed limit, the slots each key had in use still count (see the
   * module's doc). Gives the number of keys taken, or a message saying what is wrong with the state.
   */
  import(state: unknown): Result<number> {
    const bad = (what: string) => fail(`rate limit state: ${what}`);
    if (typeof state !== "object" || state === null) return bad("must be an object from export()");
    const s = state as Record<string, unknown>; // a non-null object; each field is checked below
    if (s.version !== 1) return bad(`unknown version ${show(s.version)}; this server reads version 1`);
    const limit = parseRate(s.limit, "limit");
    if (!limit.ok) return bad(limit.message);
    if (typeof s.burst !== "number" || !Number.isInteger(s.burst) || s.burst < 1 || s.burst > limit.value.count) {
      return bad(`burst must be a whole number from 1 to ${limit.value.count}, not ${show(s.burst)}`);
    }
    if (!Array.isArray(s.keys)) return bad(`keys must be an array of [key, time] pairs`);
    for (const pair of s.keys) {
      if (
        !Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "number" ||
        !Number.isFinite(pair[1])
      ) {
        return bad(`keys must be an array of [key, time] pairs, not ${show(pair)}`);
      }
    }
    const pairs = s.keys as [string, number][]; // every element was checked just above
    const now = this.#clock();
    // (TAT - now) / interval is how many slots the key has in use: the same number, at this limit's pace
    const scale = this.#interval / (limit.value.periodMs / limit.value.count);
    let taken = 0;
    for (const [key, tat] of pairs) {
      const mine = scale === 1 ? tat : now + (tat - now) * scale;
      if (mine <= now) continue;
      this.#tats.delete(key);
      this.#tats.set(key, Math.max(mine, this.#tats.get(key) ?? -Infinity));
      taken++;
    }
    this.#forget(now);
    return { ok: true, value: taken };
  }

  /** Drops the two keys that started longest ago if they are idle, then the oldest ones past maxKeys. */
  #forget(now: number): void {
    let looked = 0;
    for (const [key, tat] of this.#tats) {
      if (looked++ === 2 || tat > now) break;
      this.#tats.delete(key);
    }
    while (this.#tats.size > this.#maxKeys) {
      const oldest = this.#tats.keys().next();
      if (oldest.done) break;
      this.#tats.delete(oldest.value);
    }
  }
}

/** Why a run waits: the first limit in the way, and when its slot comes. */
export interface RateWait {
  ok: false;
  /** When to try again, in ms since the epoch. */
  until: number;
  /** The limit in the way. */
  limiter: RateLimiter;
  /** `rate limit sms: 1/min per key "+33612345678": next slot at 2026-12-02T10:01:00.000Z (in 42s)`. */
  message: string;
}

/**
 * Starts a run under several limits at once (a task's limit and its per-key limit, say): takes a slot
 * from each only if every one has a slot free now; otherwise takes none, and says until when to wait.
 * Each entry is a limiter and the run's key for it ({@linkcode RateLimiter.keyFor}).
 *
 * @example
 * ```ts
 * import { parseRateLimits, RateLimiter, tryStartAll } from "./rate.ts";
 * import assert from "node:assert/strict";
 * const now = Date.UTC(2026, 11, 2, 10);
 * const specs = parseRateLimits(["2/s", { limit: "1/min", key: "{phone}" }], "tasks.sms.rate");
 * if (!specs.ok) throw new Error(specs.message);
 * const [all, perPhone] = specs.value.map((s) => new RateLimiter(s, { clock: () => now, name: "sms" }));
 * assert.deepEqual(tryStartAll([[all, ""], [perPhone, "+331"]]), { ok: true });
 * const wait = tryStartAll([[all, ""], [perPhone, "+331"]]);
 * assert.equal(wait.ok, false);
 * if (!wait.ok) {
 *   assert.equal(wait.until, now + 60_000);
 *   assert.equal(wait.message, 'rate limit sms: 1/min per key "+331": next slot at 2026-12-02T10:01:00.000Z (in 60s)');
 * }
 * assert.equal(all.mayStart(), true); // the refused start took nothing from the task's limit
 * ```
 */
export function tryStartAll(entries: ReadonlyArray<readonly [RateLimiter, string]>): { ok: true } | RateWait {
  let wait: RateWait | undefined;
  for (const [limiter, key] of entries) {
    const ms = limiter.waitFor(key);
    if (ms <= 0) continue;
    const until = limiter.nextSlot(key);
    if (wait !== undefined && until <= wait.until) continue;
    const inText = ms < 1000 ? `${Math.ceil(ms)}ms` : `${Math.ceil(ms / 1000)}s`;
    const message = `rate limit ${limiter.describe(key)}: next slot at ${new Date(until).toISOString()} (in ${inText})`;
    wait = { ok: false, until, limiter, message };
  }
  if (wait) return wait;
  for (const [limiter, key] of entries) limiter.tryStart(key);
  return { ok: true };
}

function fail(message: string): { ok: false; message: string } {
  return { ok: false, message };
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

/**
 * Human-readable sizes and durations, as the CLI and config files take them.
 *
 * Durations: `500ms`, `5s`, `1.5s`, `2m`, `1h`, `1d` (and `0`). Sizes: `512`, `64KiB`, `1MiB`, `1GB`
 * (binary `KiB`/`MiB`/`GiB` are powers of 1024, `KB`/`MB`/`GB` of 1000).
 *
 * @module
 */

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
};

/**
 * Parses a duration such as `300ms`, `5s` or `2m` into milliseconds.
 * A bare `0` is allowed; any other number needs a unit, so that `5` is never silently 5 ms.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseDuration("1.5s"), 1500);
 * ```
 * @throws {RangeError} with a message that says what was expected.
 */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) {
    throw new RangeError(`"${text}" is not a duration; use e.g. 500ms, 5s, 2m or 1h`);
  }
  const value = Number(m[1]);
  const unit = m[2].toLowerCase();
  if (unit === "") {
    if (value === 0) return 0;
    throw new RangeError(`"${text}" needs a unit; use e.g. ${m[1]}s or ${m[1]}ms`);
  }
  const factor = DURATION_UNITS[unit];
  if (factor === undefined) {
    throw new RangeError(`"${text}" has an unknown unit "${m[2]}"; use ms, s, m, h or d`);
  }
  return Math.round(value * factor);
}

/**
 * Parses a size such as `1MiB`, `64KiB` or `4096` (bytes) into a byte count.
 *
 * @example
 * ```ts
 * import { parseSize } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseSize("1MiB"), 1048576);
 * ```
 * @throws {RangeError} with a message that says what was expected.
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) throw new RangeError(`"${text}" is not a size; use e.g. 4096, 64KiB or 1MiB`);
  const unit = m[2].toLowerCase();
  const factor = unit === "" ? 1 : SIZE_UNITS[unit];
  if (factor === undefined) {
    throw new RangeError(`"${text}" has an unknown unit "${m[2]}"; use B, KiB, MiB, GiB, KB, MB or GB`);
  }
  return Math.round(Number(m[1]) * factor);
}

/**
 * Formats milliseconds the way {@linkcode parseDuration} reads them: `250ms`, `5s`, `10m`.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatDuration(600_000), "10m");
 * ```
 */
export function formatDuration(ms: number): string {
  for (const [unit, factor] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= factor && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * Formats a byte count the way {@linkcode parseSize} reads it: `1MiB`, `64KiB`, `1000`.
 *
 * @example
 * ```ts
 * import { formatSize } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatSize(1048576), "1MiB");
 * ```
 */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return String(bytes);
}

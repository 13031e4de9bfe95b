import assert from "node:assert/strict";
import { formatDuration, formatSize, parseDuration, parseSize } from "./units.ts";

Deno.test("parseDuration reads human durations and refuses unitless numbers", () => {
  assert.equal(parseDuration("300ms"), 300);
  assert.equal(parseDuration("5s"), 5000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("0"), 0);
  assert.throws(() => parseDuration("5"), /"5" needs a unit; use e\.g\. 5s or 5ms/);
  assert.throws(() => parseDuration("5 fortnights"), /unknown unit "fortnights"/);
  assert.throws(() => parseDuration("-1s"), /is not a duration/);
});

Deno.test("parseSize reads binary and decimal units", () => {
  assert.equal(parseSize("1MiB"), 1_048_576);
  assert.equal(parseSize("1KiB"), 1024);
  assert.equal(parseSize("1KB"), 1000);
  assert.equal(parseSize("4096"), 4096);
  assert.equal(parseSize("2 GiB"), 2 * 1024 ** 3);
  assert.throws(() => parseSize("big"), /not a size/);
  assert.throws(() => parseSize("3 parsecs"), /unknown unit/);
});

Deno.test("format* writes what parse* reads", () => {
  for (const ms of [0, 250, 1500, 5000, 600_000, 3_600_000]) assert.equal(parseDuration(formatDuration(ms)), ms);
  for (const b of [100, 1024, 1_048_576, 1000]) assert.equal(parseSize(formatSize(b)), b);
  assert.equal(formatDuration(600_000), "10m");
  assert.equal(formatSize(1_048_576), "1MiB");
});

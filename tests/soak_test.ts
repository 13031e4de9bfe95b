/**
 * A short run of the soak (`deno task soak`) in the test suite: a real server flooded over loopback
 * while the chaos handler throws, hangs and crashes workers. The full-length soak is its own task.
 */
import assert from "node:assert/strict";
import { ROOT } from "./helpers.ts";

Deno.test("soak, short: with throw, hang and crash faults injected, nothing accepted is lost or answered twice", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}bench/soak.ts`, "--duration", "3s", "--conns", "4", "--burst", "20", "--json"],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const report = JSON.parse(text.trim().split("\n").at(-1)!);
  assert.equal(report.lost, 0, text);
  assert.equal(report.duplicated, 0, text);
  assert.equal(report.missing_immediate_replies, 0, text);
  assert.equal(report.unknown_finals, 0, text);
  assert.equal(report.server_exit, 0, text);
  assert.ok(report.accepted > 0 && report.done > 0, text);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
});

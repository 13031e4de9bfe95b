/**
 * `deno task bench --quick` in the test suite: every scene of the benchmark suite, small, against
 * real servers. It checks that every task completed and none was lost — never a speed threshold.
 */
import assert from "node:assert/strict";
import { ROOT, runCli } from "./helpers.ts";

Deno.test("bench --quick: every scene completes every task, none lost", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}bench/suite.ts`, "--quick"],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, stdout + new TextDecoder().decode(out.stderr));
  assert.match(stdout, /\| \(a\) echo 10×200, window 20 \| \d+ \| \d+ \| \d+% \|/);
  assert.match(stdout, /\| \(d\) 200 idle connections \|/);
  assert.match(stdout, /Idle server with 4 workers: \d+ MiB RSS; after 2,000 echo tasks \d+ MiB, \d+ MiB \d+ s later/);
  assert.match(stdout, /bench --quick: every task completed, none lost/);
});

Deno.test("bench --spawn: one command starts a server with the serve flags after --, even a quiet --log-level", async () => {
  const r = await runCli([
    "bench",
    "--spawn",
    "--conns",
    "2",
    "--tasks",
    "50",
    "--task",
    "echo",
    "--json",
    "--",
    "--workers",
    "1",
    "--log-level",
    "error",
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout);
  assert.deepEqual([report.done, report.lost], [100, 0], r.stdout);
});

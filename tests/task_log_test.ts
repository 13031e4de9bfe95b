/**
 * What the server's terminal shows per task at the default level (info): each task's accept and
 * end, as Swoole's example server did — within a budget, so that a flood cannot slow it down.
 */
import assert from "node:assert/strict";
import { eventually, LineClient, spawnServe } from "./helpers.ts";

Deno.test("info: each task's accept and end are logged, with the data's summary and the result", async () => {
  const server = await spawnServe(["--sms-delay", "50ms"]);
  const c = await LineClient.connect(server.port);
  try {
    await c.send("13800138000");
    await c.take(2);
    await eventually("the end line", () => /task 1 \(sms\) done/.test(server.log()));
    assert.match(server.log(), /\[INF\] asynctask\.task: task 1 \(sms\) accepted: sending SMS to 13800138000/);
    assert.match(
      server.log(),
      /\[INF\] asynctask\.task: task 1 \(sms\) done in \d+ ms on worker \d, attempt 1: \{"phone":"13800138000"/,
    );
  } finally {
    await c.close();
    server.child.kill("SIGTERM");
    await server.exited();
  }
});

Deno.test("info: a flood of tasks writes at most 20 task lines a second, then one line with the count of the rest", async () => {
  const server = await spawnServe(["--task", "echo", "--stats-interval", "0"]);
  const c = await LineClient.connect(server.port);
  try {
    await c.send(...Array.from({ length: 2000 }, (_, i) => `t${i}`));
    await c.take(4000, 30_000);
    server.child.kill("SIGTERM"); // the summary of what was held back is written on the way out at the latest
    const { log } = await server.exited();
    const taskLines = log.split("\n").filter((l) => /asynctask\.task: task \d+ /.test(l));
    assert.ok(taskLines.length <= 60, `${taskLines.length} task lines`);
    const held = /… and ([\d,]+) more task lines in the last 10s/.exec(log);
    assert.ok(held, log.slice(-500));
    assert.equal(Number(held[1].replaceAll(",", "")) + taskLines.length, 4000, "every accept and end is counted");
  } finally {
    await c.close();
  }
});

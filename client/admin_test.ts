import assert from "node:assert/strict";
import { formatAge, jsonReply, renderStatus, renderTasks, taskIds } from "./admin.ts";
import { displayWidth } from "./render.ts";

Deno.test("renderStatus: counters it does not know are listed as /stats shows them; missing ones are ?", () => {
  const text = renderStatus({ accepted: 3, uptime_s: 5, shed: 2, pools: { io: 1 } }, "db:9501");
  const lines = text.split("\n");
  assert.equal(lines[0], "server db:9501, up 5s");
  assert.equal(lines[1], "  connections  ? open");
  assert.equal(lines[2], "  tasks        3 accepted, ? refused, ? done, ? failed");
  assert.ok(lines.includes("  shed   2"), text);
  assert.ok(lines.includes("  pools  io 1"), text);
  assert.ok(!text.includes("worker "), "no workers table without workers");
});

Deno.test("renderStatus: worker states, where the server reports them, get a column", () => {
  const text = renderStatus({
    workers: [{ id: 1, state: "busy", running: 2, done: 0, failed: 0, restarts: 1 }, {
      id: 2,
      running: 0,
      done: 3,
      failed: 0,
      restarts: 0,
    }],
  }, "h:1");
  assert.ok(
    text.endsWith(
      "\n  worker  state  running  done  failed  restarts" +
        "\n  1       busy         2     0       0         1" +
        "\n  2                    0     3       0         0",
    ),
    text,
  );
});

Deno.test("renderTasks: big data by its size, wide characters clipped by columns, the task a retry came from", () => {
  const now = Date.parse("2026-01-01T01:00:00Z");
  const text = renderTasks(
    "failed",
    [
      {
        id: 12,
        task: "sms",
        state: "failed",
        attempts: 3,
        accepted_at: "2026-01-01T00:00:00Z",
        finished_at: "2026-01-01T00:30:00Z",
        error: { code: "timeout", message: "网关没有应答".repeat(10) },
        data_bytes: 9000,
        retry_of: 4,
      },
    ],
    20,
    now,
  );
  const [head, row] = text.split("\n");
  assert.match(head, /^id +task +state +attempts +age +error +data +retry of$/);
  assert.match(row, /^12 +sms +failed +3 +30m 0s +timeout: 网关.*… +\(9000 bytes\) +4$/);
  const error = row.slice(row.indexOf("timeout"), row.indexOf("(9000"));
  assert.ok(displayWidth(error.trimEnd()) <= 60, `clipped to 60 columns: ${displayWidth(error)}`);
});

Deno.test("renderTasks: running tasks' age counts from their acceptance; a full page says there may be more", () => {
  const text = renderTasks(
    "running",
    [
      { id: 1, task: "slow", state: "running", attempts: 1, accepted_at: "2026-01-01T00:00:00Z", worker: 2 },
    ],
    1,
    Date.parse("2026-01-01T02:05:00Z"),
  );
  assert.equal(
    text,
    "id  task  state    attempts    age  worker\n" +
      " 1  slow  running         1  2h 5m       2\n" +
      "(the first 1; there may be more: raise --limit)",
  );
});

Deno.test("taskIds and formatAge at their edges; jsonReply of what is not a reply", () => {
  assert.throws(() => taskIds("cancel", ["0"]), /"0" is not a task id/);
  assert.throws(() => taskIds("cancel", ["-3"]), /"-3" is not a task id/);
  assert.throws(() => taskIds("cancel", ["99999999999999999"]), /is not a task id/);
  assert.deepEqual(taskIds("cancel", ["9007199254740991"]), [9007199254740991]);
  assert.equal(formatAge(-5), "0s", "a clock a little behind the server's");
  assert.equal(formatAge(3600), "1h 0m");
  assert.equal(jsonReply("{not json"), undefined);
  assert.equal(jsonReply('{"no":"type"}'), undefined);
  assert.equal(jsonReply("[1]"), undefined);
});

/**
 * Graceful stop of a real `serve` process: SIGTERM/SIGINT finish what is queued and running and
 * deliver the final replies before exit 0; new tasks are refused meanwhile; a second signal stops
 * at once; `--shutdown-timeout` bounds the wait.
 */
import assert from "node:assert/strict";
import { eventually, LineClient, ROOT, spawnServe } from "./helpers.ts";
import { SAME_SIGNAL_MS } from "../server/mod.ts";

Deno.test("SIGTERM: queued and running tasks finish, their DONE replies are delivered, new tasks refused, exit 0", async () => {
  const server = await spawnServe(["--workers", "1", "--concurrency", "2"]);
  const c = await LineClient.connect(server.port);
  try {
    // Two run at once, two wait in the queue; long enough that all four are unfinished while a slow
    // machine handles the signal and the late task.
    await c.send("/task sleep 2500", "/task sleep 2500", "/task sleep 2000", "/task sleep 2000");
    assert.equal((await c.take(4)).filter((l) => l.startsWith("ACCEPTED")).length, 4);
    server.child.kill("SIGTERM");
    await eventually("the server to start stopping", () => /SIGTERM: stopping/.test(server.log()));
    await c.send("/task echo late", "/ping");
    assert.match(await c.next(), /^ERROR shutting_down the server is shutting down and takes no new tasks/);
    assert.equal(await c.next(), "PONG", "the connection still answers while draining");
    const finals = (await c.take(4)).sort();
    assert.deepEqual(finals, [
      'DONE 1 {"slept_ms":2500}',
      'DONE 2 {"slept_ms":2500}',
      'DONE 3 {"slept_ms":2000}',
      'DONE 4 {"slept_ms":2000}',
    ]);
    await c.closedByServer();
    const { code, log } = await server.exited();
    assert.equal(code, 0, log);
    assert.match(log, /SIGTERM: stopping — no new tasks; finishing 4 queued and running/);
    assert.match(log, /stopped: every accepted task finished and was answered/);
    // New connections are refused once it has stopped listening.
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: server.port }), Deno.errors.ConnectionRefused);
  } finally {
    await c.close();
  }
});

Deno.test("a second SIGINT stops at once with a non-zero exit", async () => {
  const server = await spawnServe([]);
  const c = await LineClient.connect(server.port);
  try {
    await c.send("/task sleep 60000");
    assert.match(await c.next(), /^ACCEPTED 1/);
    server.child.kill("SIGINT");
    await eventually("the first SIGINT to be handled", () => /SIGINT: stopping/.test(server.log()));
    // A person's second Ctrl-C, not the first one delivered twice (see the `deno task` test below).
    await new Promise((r) => setTimeout(r, SAME_SIGNAL_MS + 100));
    server.child.kill("SIGINT");
    const { code, log } = await server.exited();
    assert.equal(code, 130, log);
    assert.match(log, /second SIGINT: stopping now; 1 unfinished task\(s\) get no final reply/);
  } finally {
    await c.close();
  }
});

Deno.test("--shutdown-timeout: tasks still running then end FAILED shutting_down, exit 1", async () => {
  const server = await spawnServe(["--shutdown-timeout", "300ms"]);
  const c = await LineClient.connect(server.port);
  try {
    await c.send("/task sleep 60000", "/task sleep 10");
    assert.deepEqual((await c.take(2)).map((l) => l.split(" ").slice(0, 2).join(" ")), ["ACCEPTED 1", "ACCEPTED 2"]);
    assert.equal(await c.next(), 'DONE 2 {"slept_ms":10}');
    server.child.kill("SIGTERM");
    assert.match(
      await c.next(),
      /^FAILED 1 shutting_down the server stopped before the task finished \(--shutdown-timeout 300ms\)/,
    );
    const { code, log } = await server.exited();
    assert.equal(code, 1, log);
    assert.match(log, /stopped with 1 task\(s\) unfinished after --shutdown-timeout/);
  } finally {
    await c.close();
  }
});

Deno.test("--log-format json --log-file: one JSON record per line, with each task's id, worker, attempt and duration", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/asynctask.log`;
  try {
    const server = await spawnServeLoggingTo(file);
    const c = await LineClient.connect(server.port);
    try {
      await c.send("/task sleep 20", "/task nosuch x");
      assert.equal((await c.take(3)).length, 3);
      await eventually(
        "an activity summary in the log",
        async () => /"message":"last /.test(await Deno.readTextFile(file)),
      );
    } finally {
      await c.close();
    }
    server.child.kill("SIGTERM");
    assert.equal((await server.exited()).code, 0);
    const records = (await Deno.readTextFile(file)).trim().split("\n").map((l) => JSON.parse(l));
    const done = records.find((r) => r.properties?.id === 1 && /done/.test(r.message));
    assert.ok(done, JSON.stringify(records, null, 1));
    assert.equal(done.level, "INFO"); // each task's end is an info line (within the log budget)
    assert.equal(done.logger, "asynctask.task");
    assert.equal(done.properties.task, "sleep");
    assert.equal(done.properties.attempt, 1);
    assert.ok(done.properties.worker >= 1);
    assert.ok(done.properties.ms >= 20);
    assert.ok(records.some((r) => /stopped: every accepted task finished/.test(r.message)));
    const started = records.find((r) => r.properties?.id === 1 && /started/.test(r.message));
    assert.ok(started, "the start of each task is logged at debug");
    const activity = records.find((r) => /^last /.test(r.message));
    assert.ok(activity, "the activity summary");
    assert.deepEqual([activity.level, activity.properties.accepted, activity.properties.refused], ["INFO", 1, 1]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Starts `serve` logging JSON to `file`; its port is read from the "listening" record there. */
async function spawnServeLoggingTo(file: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}main.ts`,
      "serve",
      "--port",
      "0",
      "--log-format",
      "json",
      "--log-file",
      file,
      "--log-level",
      "debug",
      "--stats-interval",
      "200ms",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const text = await Deno.readTextFile(file).catch(() => "");
    const m = /"address":"[\d.]+:(\d+)"/.exec(text);
    if (m) return { port: Number(m[1]), child, exited: async () => ({ code: (await child.status).code }) };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  await child.status;
  throw new Error("serve did not log its address to the log file");
}

Deno.test("Ctrl-C on `deno task serve` (SIGINT to the whole process group): one graceful stop, not two signals", async () => {
  // The terminal signals every process of the foreground group: `deno task` forwards its SIGINT
  // to the server, which has had its own already. That is one Ctrl-C, and must not stop at once.
  const server = await spawnServe(["--sms-delay", "300ms"], undefined, { denoTask: true });
  const c = await LineClient.connect(server.port);
  try {
    await c.send("13800138000");
    assert.match(await c.next(), /^ACCEPTED 1/);
    Deno.kill(-server.child.pid, "SIGINT");
    assert.match(await c.next(), /^DONE 1 /, "the accepted task still gets its final reply");
    const { code, log } = await server.exited();
    assert.equal(code, 0, log);
    assert.doesNotMatch(log, /stopping now/);
    assert.match(log, /stopped: every accepted task finished and was answered/);
  } finally {
    await c.close();
  }
});

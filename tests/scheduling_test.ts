/**
 * Scheduling through real sockets and a real journal: priorities, delayed tasks (and a restart in
 * the middle of a delay), pause and resume, and bad values refused.
 */
import assert from "node:assert/strict";
import { FIXTURE_HANDLERS, LineClient, runCli, spawnServe, startServer } from "./helpers.ts";

Deno.test("priority: among waiting tasks, higher ones start first; within one, in order", async () => {
  const server = await startServer({ workers: 1, concurrency: 1, modules: [FIXTURE_HANDLERS] });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send("/task slow 300"); // holds the one slot while the others queue up
    await c.next();
    await c.send(
      '{"task":"echo","data":"low-1","priority":-5}',
      '{"task":"echo","data":"normal"}',
      "/task echo --priority 10 high",
      '{"task":"echo","data":"low-2","priority":-5}',
    );
    const lines = await c.take(9, 10_000);
    const done = lines.filter((l) => l.startsWith("DONE") || /"type":"done"/.test(l));
    const order = done.map((l) => /(low-1|low-2|normal|high|finished)/.exec(l)?.[1]);
    assert.deepEqual(order, ["finished", "high", "normal", "low-1", "low-2"]);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("delay: ACCEPTED at once, /status says scheduled with the time, it runs when due; /cancel works on it", async () => {
  const server = await startServer({ defaultTask: "echo" });
  const c = await LineClient.connect(server.addr.port);
  try {
    const t0 = Date.now();
    await c.send('{"task":"echo","data":"later","delay":"400ms"}', "/task echo --delay 10s never");
    assert.match(await c.next(), /"type":"accepted","task_id":1/);
    assert.match(await c.next(), /^ACCEPTED 2 echo queued; it runs at \d{4}-\d\d-\d\dT/);
    await c.send("/status 1", "/tasks scheduled");
    assert.match(await c.next(), /^STATUS 1 scheduled \d{4}-\d\d-\d\dT[\d:.]+Z$/);
    assert.match(await c.next(), /^TASKS \[\{"id":1,.*"state":"scheduled".*"run_at":.*\{"id":2,/);
    assert.match(await c.next(2000), /"type":"done","task_id":1,"result":"later"/);
    assert.ok(Date.now() - t0 >= 400, "not before its time");
    await c.send("/cancel 2");
    assert.equal(await c.next(), "OK cancelled 2");
    assert.match(await c.next(), /^FAILED 2 cancelled /);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("bad scheduling values are refused with invalid_data, saying what to send", async () => {
  const server = await startServer({ defaultTask: "echo", maxDelayMs: 60_000 });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send(
      '{"task":"echo","data":1,"delay":"-5s"}',
      '{"task":"echo","data":1,"delay":"2m"}',
      '{"task":"echo","data":1,"run_at":"tomorrow"}',
      '{"task":"echo","data":1,"priority":1000}',
      '{"task":"echo","data":1,"priority":1.5}',
      '{"task":"echo","data":1,"delay":"1s","run_at":"2030-01-01T00:00:00Z"}',
      "/task echo --later 5s x",
    );
    const replies = await c.take(7);
    for (const r of replies.slice(0, 6)) assert.match(r, /"code":"invalid_data"/, r);
    assert.match(replies[1], /past --max-delay 1m/);
    assert.match(replies[6], /^ERROR bad_request unknown option --later of \/task/);
    assert.equal(server.stats().accepted, 0);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("with --journal, a delayed task survives a restart in the middle of its delay, and runs then", async () => {
  const dir = await Deno.makeTempDir();
  const args = ["--journal", `${dir}/j.db`, "--task", "echo"];
  try {
    let server = await spawnServe(args);
    let c = await LineClient.connect(server.port);
    // Long enough for a stop and a start on a slow machine: the restarted server must find it still scheduled.
    await c.send('{"task":"echo","data":"kept","delay":"8s"}');
    assert.match(await c.next(), /"type":"accepted","task_id":1/);
    await c.close();
    server.child.kill("SIGTERM");
    const { code, log } = await server.exited();
    assert.equal(code, 0, log);
    server = await spawnServe(args);
    c = await LineClient.connect(server.port);
    try {
      // Still scheduled: the graceful stop did not wait for it (the journal keeps it), nor did it run.
      await c.send("/status 1");
      assert.match(await c.next(), /^STATUS 1 scheduled /);
      let status = "";
      for (let i = 0; i < 200 && !/done/.test(status); i++) {
        await new Promise((r) => setTimeout(r, 100));
        await c.send("/status 1");
        status = await c.next();
      }
      assert.equal(status, "STATUS 1 done kept");
    } finally {
      await c.close();
      server.child.kill("SIGTERM");
      await server.exited();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("/pause a task: still accepted, not started; /resume: it runs", async () => {
  const server = await startServer({ defaultTask: "echo" });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send("/pause echo", "waiting", "/status 1");
    assert.equal(await c.next(), "OK paused echo; paused now: echo");
    assert.equal(await c.next(), "ACCEPTED 1 echo queued");
    assert.equal(await c.next(), "STATUS 1 queued paused: task echo (/resume to go on)");
    await c.send("/pause nosuchtask");
    assert.match(await c.next(), /^ERROR unknown_task no task named "nosuchtask"/);
    await c.send('{"cmd":"resume","task":"echo"}');
    assert.equal(await c.next(), '{"type":"ok","paused":[]}');
    assert.equal(await c.next(), "DONE 1 waiting");
    await c.send("/pause", "again", "/resume");
    assert.deepEqual(await c.take(4), [
      "OK paused *; paused now: *",
      "ACCEPTED 2 echo queued",
      "OK resumed *; paused now: nothing",
      "DONE 2 again",
    ]);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

/** A server whose config file declares `tasks`. */
async function withConfig(tasks: Record<string, unknown>, fn: (port: number, log: () => string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/asynctask.json`, JSON.stringify({ tasks }));
  const server = await spawnServe(["--config", `${dir}/asynctask.json`, "--sms-delay", "300ms"]);
  try {
    await fn(server.port, server.log);
  } finally {
    server.child.kill("SIGTERM");
    await server.exited();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("unique: a second submission with the key of a task that is not done joins it — one run, the reply to both", async () => {
  await withConfig({ sms: { kind: "builtin", unique: "{data}", "unique-for": "2s" } }, async (port) => {
    const a = await LineClient.connect(port);
    const b = await LineClient.connect(port);
    try {
      await a.send("13800138000");
      assert.equal(await a.next(), "ACCEPTED 1 sending SMS to 13800138000, the result will follow");
      await b.send('{"task":"sms","data":"13800138000","id":"again"}', "13900139000");
      assert.match(await b.next(), /"type":"accepted","id":"again","task_id":1/, "the same task, not a second one");
      assert.equal(await b.next(), "ACCEPTED 2 sending SMS to 13900139000, the result will follow");
      assert.match(await a.next(), /^DONE 1 \{"phone":"13800138000"/);
      const both = await b.take(2);
      assert.ok(both.some((l) => /"type":"done","id":"again","task_id":1/.test(l)), both.join("\n"));
      // Within unique-for: the result at once, no new run.
      await a.send("/task sms --unique other 13800138000", "13800138000");
      assert.match(await a.next(), /^ACCEPTED 3 /, "an explicit unique_key is its own key");
      assert.match(await a.next(), /^ACCEPTED 1 duplicate of task 1 \(unique key "13800138000"\), which is done/);
      assert.match(await a.next(), /^DONE 1 /);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

Deno.test("rate limit per key: over the limit, tasks wait their turn (not refused) and /status says why and until when", async () => {
  await withConfig({ sms: { kind: "builtin", rate: "1/min", "rate-key": "{data}" } }, async (port) => {
    const c = await LineClient.connect(port);
    try {
      await c.send("13800138000", "13800138000", "13900139000");
      const accepted = await c.take(3);
      assert.ok(accepted.every((l) => l.startsWith("ACCEPTED")), accepted.join("\n"));
      const done = await c.take(2, 5000);
      assert.deepEqual(done.map((l) => /^DONE (\d+)/.exec(l)?.[1]).sort(), ["1", "3"], "one per number a minute");
      await c.send("/status 2");
      assert.match(
        await c.next(),
        /^STATUS 2 queued rate limit sms: 1\/min per key "13800138000": next slot at \d{4}-\d\d-\d\dT[\d:.]+Z \(in \d+s\)$/,
      );
      await c.send("/cancel 2");
      assert.equal(await c.next(), "OK cancelled 2");
      assert.match(await c.next(), /^FAILED 2 cancelled /);
    } finally {
      await c.close();
    }
  });
});

Deno.test("schedules: a periodic task runs as an ordinary task (an id, /status); its last run is kept by the journal", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/asynctask.json`,
    JSON.stringify({ schedules: { heartbeat: { task: "echo", data: "beat", every: "1s" } } }),
  );
  const args = ["--config", `${dir}/asynctask.json`, "--journal", `${dir}/j.db`];
  try {
    const server = await spawnServe(args);
    const c = await LineClient.connect(server.port);
    try {
      let status = "";
      for (let i = 0; i < 40 && !/done/.test(status); i++) {
        await new Promise((r) => setTimeout(r, 100));
        await c.send("/status 1");
        status = await c.next();
      }
      assert.equal(status, "STATUS 1 done beat");
      assert.match(server.log(), /schedule heartbeat: task 1 \(echo\), due \d{4}-/);
    } finally {
      await c.close();
      server.child.kill("SIGTERM");
      await server.exited();
    }
    const db = new (await import("node:sqlite")).DatabaseSync(`${dir}/j.db`);
    const row = db.prepare("SELECT value FROM meta WHERE key = 'state.schedules'").get() as { value: string };
    db.close();
    assert.ok(JSON.parse(row.value).heartbeat > 0, row.value);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("schedules: bad entries stop the start, naming the key as written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (
      const [schedules, message] of [
        [{ x: { task: "echo", cron: "*/5 * * *x *" } }, /schedules\.x\.cron/],
        [{ x: { task: "echo", cron: "0 * * * *", tz: "Mars/Olympus" } }, /schedules\.x\.tz/],
        [{ x: { task: "nosuch", every: "1m" } }, /schedules\.x\.task: no task named "nosuch"/],
      ] as const
    ) {
      await Deno.writeTextFile(`${dir}/c.json`, JSON.stringify({ schedules }));
      const r = await runCli(["serve", "--port", "0", "--config", `${dir}/c.json`]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rate limits hold across a restart with the journal", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/asynctask.json`,
    JSON.stringify({ tasks: { echo: { kind: "builtin", rate: "1/min", "rate-key": "{data}" } } }),
  );
  const args = ["--config", `${dir}/asynctask.json`, "--journal", `${dir}/j.db`, "--task", "echo"];
  try {
    let server = await spawnServe(args);
    let c = await LineClient.connect(server.port);
    await c.send("ana");
    assert.deepEqual(await c.take(2), ["ACCEPTED 1 echo queued", "DONE 1 ana"]);
    await c.close();
    server.child.kill("SIGTERM");
    await server.exited();
    server = await spawnServe(args);
    c = await LineClient.connect(server.port);
    try {
      await c.send("ana", "/status 2");
      assert.equal(await c.next(), "ACCEPTED 2 echo queued");
      assert.match(await c.next(), /^STATUS 2 queued rate limit echo: 1\/min per key "ana": next slot at /);
    } finally {
      await c.close();
      server.child.kill("SIGKILL"); // a graceful stop would wait for task 2, for its minute (the journal keeps it)
      await server.exited();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without --journal, a graceful stop does not wait for a delayed task: it fails shutting_down at once, exit 0", async () => {
  const server = await spawnServe(["--task", "echo"]);
  const c = await LineClient.connect(server.port);
  try {
    await c.send('{"task":"echo","data":"later","delay":"1h"}', "/task echo now");
    assert.match(await c.next(), /"type":"accepted","task_id":1/);
    assert.equal(await c.next(), "ACCEPTED 2 echo queued");
    assert.equal(await c.next(), "DONE 2 now");
    server.child.kill("SIGTERM");
    // Within next()'s 10 s: not after the hour, nor after the 30 s --shutdown-timeout.
    const failed = JSON.parse(await c.next());
    assert.equal(failed.type, "failed");
    assert.equal(failed.error.code, "shutting_down");
    assert.match(failed.error.message, /without --journal/);
    const { code, log } = await server.exited();
    assert.equal(code, 0, log);
    assert.match(log, /finishing 0 queued and running/);
    assert.match(log, /1 delayed task\(s\) not due yet failed with shutting_down/);
  } finally {
    await c.close();
  }
});

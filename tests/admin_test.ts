/**
 * The operator's commands — `asynctask status`, `tasks`, `retry`, `cancel` — run as real child
 * processes against a real server with real workers (the fixture handlers: `fail` throws its data,
 * `slow` waits its data in ms and stops when cancelled): what they print, their `--json`, and their
 * exit codes (0 done, 1 refused or failed again, 2 no connection, no token, or a usage error).
 */
import assert from "node:assert/strict";
import {
  FIXTURE_HANDLERS,
  LineClient,
  makeCertificates,
  opensslMissing,
  runCli,
  startServer,
  untilReply,
} from "./helpers.ts";
import type { TaskServer } from "../server/mod.ts";

/** A port nothing listens on: bound, then released. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** Runs `asynctask <args…> --port <the server's>`. */
function admin(server: TaskServer, args: string[], env?: Record<string, string>) {
  return runCli([...args, "--port", String(server.addr.port)], env ? { env } : {});
}

/** A server with the fixture handlers, one worker running one task at a time: a second task waits in the queue. */
async function withServer(fn: (server: TaskServer, owner: LineClient) => Promise<void>): Promise<void> {
  const server = await startServer({ workers: 1, concurrency: 1, modules: [FIXTURE_HANDLERS] });
  const owner = await LineClient.connect(server.addr.port);
  try {
    await fn(server, owner);
  } finally {
    await owner.close();
    await server.shutdown(5000);
  }
}

Deno.test("status: the server's counters in words, per task and per worker; --json is the /stats object", async () => {
  await withServer(async (server, owner) => {
    await owner.send("/task echo hi", "/task fail disk full", "/task sms not-a-phone");
    assert.deepEqual((await owner.take(5)).map((l) => l.split(" ")[0]).sort(), [
      "ACCEPTED",
      "ACCEPTED",
      "DONE",
      "ERROR",
      "FAILED",
    ]);
    const r = await admin(server, ["status"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const lines = r.stdout.split("\n");
    assert.match(
      lines[0],
      new RegExp(`^server 127\\.0\\.0\\.1:${server.addr.port}, up \\d+s, runs sms, echo, sleep, fail,`),
    );
    assert.match(r.stdout, /\n {2}connections +2 open, 2 in all\n/, "the owner's connection and this one");
    assert.match(r.stdout, /\n {2}tasks +2 accepted, 1 refused, 1 done, 1 failed\n/);
    assert.match(r.stdout, /\n {2}now +0 queued, 0 running, 0 retrying\n/);
    assert.match(r.stdout, /\n {2}task +accepted +done +failed +retried\n/);
    assert.match(r.stdout, /\n {2}echo +1 +1 +0 +0\n/);
    assert.match(r.stdout, /\n {2}fail +1 +0 +1 +0\n/);
    assert.match(
      r.stdout,
      /\n {2}worker +state +running +done +failed +restarts +memory\n {2}1 +(idle|busy|starting) +0 +1 +1 +0 +\d+ MiB\n/,
    );

    const j = await admin(server, ["status", "--json"]);
    assert.equal(j.code, 0, j.stderr);
    const stats = JSON.parse(j.stdout);
    assert.equal(stats.accepted, 2);
    assert.equal(stats.by_task.fail.failed, 1);
    assert.equal(stats.type, undefined, "the counters, not the reply's envelope");
    assert.equal(stats.id, undefined);
  });
});

Deno.test("tasks --failed: a table with the error and the data; --json is the array; one state, exactly", async () => {
  await withServer(async (server, owner) => {
    const long = "the disk is full ".repeat(10).trim();
    await owner.send(`/task fail ${long}`, "/task fail second");
    await owner.take(4);
    const r = await admin(server, ["tasks", "--failed"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^id +task +state +attempts +age +worker +error +data$/);
    assert.match(lines[1], /^ 2 +fail +failed +1 +\d+s +1 +handler_error: second +"second"$/, "newest first");
    assert.match(
      lines[2],
      /^ 1 +fail +failed +1 +\d+s +1 +handler_error: the disk is full the disk .*…  +"the disk .*…$/,
    );
    assert.ok(lines[2].length < 150, "long errors and data are clipped");
    assert.equal(lines.length, 3);

    const limited = await admin(server, ["tasks", "--failed", "--limit", "1"]);
    assert.match(limited.stdout, /^id .*\n 2 .*\n\(the newest 1; there may be more: raise --limit\)\n$/);

    const j = await admin(server, ["tasks", "--failed", "--json"]);
    assert.equal(j.code, 0, j.stderr);
    const listed = JSON.parse(j.stdout);
    assert.deepEqual(listed.map((t: { id: number; data: string }) => [t.id, t.data]), [[2, "second"], [1, long]]);
    assert.equal(listed[1].error.message, long, "--json is not clipped");

    const none = await admin(server, ["tasks", "--queued"]);
    assert.equal(none.code, 0);
    assert.equal(none.stdout, "no queued tasks\n");

    for (const args of [["tasks"], ["tasks", "--failed", "--running"]]) {
      const bad = await admin(server, args);
      assert.equal(bad.code, 2, args.join(" "));
      assert.equal(bad.stdout, "");
      assert.match(
        bad.stderr,
        /tasks: (say which tasks to list|one state at a time, not failed and running): `.*tasks --failed`, `--running`, `--queued` or `--scheduled`\n$/,
      );
    }
  });
});

Deno.test("tasks --scheduled: a delayed task, with the time left until it runs", async () => {
  await withServer(async (server, owner) => {
    await owner.send("/task fail --delay 1h later");
    await owner.take(1);
    const r = await admin(server, ["tasks", "--scheduled"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^id +task +state +attempts +age +runs in$/);
    assert.match(lines[1], /^ 1 +fail +scheduled +0 +\d+s +(59m \d+s|1h 0m)$/);
    assert.equal(lines.length, 2);
    const none = await admin(server, ["tasks", "--running"]);
    assert.equal(none.stdout, "no running tasks\n");
  });
});

Deno.test("cancel: a running task and a queued one (their owner gets FAILED cancelled); an unknown id is refused, exit 1", async () => {
  await withServer(async (server, owner) => {
    await owner.send("/task slow 30000", "/task slow 200");
    assert.deepEqual(await owner.take(2), ["ACCEPTED 1 slow task queued", "ACCEPTED 2 slow task queued"]);
    const admin1 = await LineClient.connect(server.addr.port);
    await untilReply(admin1, "/status 1", /^STATUS 1 running/);
    await admin1.close();

    const running = await admin(server, ["tasks", "--running"]);
    assert.match(running.stdout, /^id +task +state +attempts +age +worker\n 1 +slow +running +1 +\d+s +1\n$/);
    const queued = await admin(server, ["tasks", "--queued", "--json"]);
    assert.deepEqual(JSON.parse(queued.stdout).map((t: { id: number }) => t.id), [2]);

    // The running task stops at once, not after its 30 s (take() gives up after 10 s).
    const r = await admin(server, ["cancel", "2", "1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "task 2 cancelled\ntask 1 cancelled\n");
    assert.equal(r.stderr, "");
    const ends = await owner.take(2);
    assert.ok(
      ends.every((l) => /^FAILED [12] cancelled cancelled by 127\.0\.0\.1:\d+ \(connection \d+\)$/.test(l)),
      ends.join("\n"),
    );

    const unknown = await admin(server, ["cancel", "999"]);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stdout, "");
    assert.match(
      unknown.stderr,
      /^\S*deno task (--config \S+ )?cancel: task 999 was not cancelled: not_found — no task 999 has been accepted by this server \(the last is 2\) \(`.*tasks --running` lists ids\)\n$/,
    );
    // One refused among several: the others are done, and the exit code says one was not.
    await owner.send("/task slow 30000");
    assert.equal(await owner.next(), "ACCEPTED 3 slow task queued");
    const mixed = await admin(server, ["cancel", "3", "1", "--json"]);
    assert.equal(mixed.code, 1);
    const replies = mixed.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(replies.map((x: { type: string }) => x.type), ["ok", "error"]);
    assert.equal(replies[1].error.code, "conflict");
    assert.match(mixed.stderr, /task 1 was not cancelled: conflict — task 1 is failed already/);
    assert.match(await owner.next(), /^FAILED 3 cancelled /);
  });
});

Deno.test("retry: prints the new id, waits for its final reply; exit 0 when it is DONE, 1 when it fails again or is refused", async () => {
  await withServer(async (server, owner) => {
    // A task that fails for good (its data makes it fail), and two cancelled ones (they would run fine).
    await owner.send("/task fail disk full", "/task slow 30000", "/task slow 100");
    assert.equal((await owner.take(4)).filter((l) => l.startsWith("ACCEPTED")).length, 3);
    const c = await admin(server, ["cancel", "3", "2"]);
    assert.equal(c.code, 0, c.stderr);
    assert.equal((await owner.take(2)).filter((l) => / cancelled cancelled by /.test(l)).length, 2);
    const failed = await admin(server, ["tasks", "--failed", "--json"]);
    assert.deepEqual(JSON.parse(failed.stdout).map((t: { id: number }) => t.id).sort(), [1, 2, 3]);

    const ok = await admin(server, ["retry", "3"]);
    assert.equal(ok.stderr, "");
    assert.equal(ok.code, 0);
    assert.match(ok.stdout, /^task 3 → retried as task 4\nDONE 4 finished \(worker 1, \d+ ms\)\n$/);

    const again = await admin(server, ["retry", "1"]);
    assert.equal(again.code, 1, "the new task failed too");
    assert.match(again.stdout, /^task 1 → retried as task 5\nFAILED 5 handler_error disk full\n$/);

    const refused = await admin(server, ["retry", "1", "4", "777"]);
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, "");
    const why = refused.stderr.trimEnd().split("\n");
    assert.equal(why.length, 3, refused.stderr);
    assert.equal(why[0], "./deno task retry: task 1 was not retried: conflict — task 1 was retried already, as task 5");
    assert.equal(
      why[1],
      "./deno task retry: task 4 was not retried: conflict — task 4 is done: only a failed task can be retried",
    );
    assert.match(
      why[2],
      /^\S*deno task (--config \S+ )?retry: task 777 was not retried: not_found — no task 777 has been accepted by this server \(the last is 5\) \(`.*tasks --failed` lists ids\)$/,
    );

    // --no-wait: the new id only; --json: the server's lines, one JSON object each.
    const noWait = await admin(server, ["retry", "5", "--no-wait"]);
    assert.equal(noWait.code, 0, noWait.stderr);
    assert.equal(noWait.stdout, "task 5 → retried as task 6\n");
    await untilReply(owner, "/status 6", /^STATUS 6 failed/);
    const json = await admin(server, ["retry", "6", "--json"]);
    assert.equal(json.code, 1);
    const lines = json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l: { type: string; task_id: number }) => [l.type, l.task_id]), [["accepted", 7], [
      "failed",
      7,
    ]]);
    assert.equal(lines[1].error.message, "disk full");
  });
});

Deno.test("exit 2: no server (the message names the address and how to start one), a refused or missing token, a bad id", async () => {
  const port = freePort();
  const none = await runCli(["status", "--port", String(port)]);
  assert.equal(none.code, 2);
  assert.equal(none.stdout, "");
  assert.match(
    none.stderr,
    new RegExp(
      `^\\S*deno task (--config \\S+ )?status: cannot connect to 127\\.0\\.0\\.1:${port}: connection refused — is the server running\\? Start it with \`.*serve --port ${port}\`\\n$`,
    ),
  );
  const retry = await runCli(["retry", "1", "--port", String(port)]);
  assert.equal(retry.code, 2);

  const server = await startServer({ token: "admin-secret" });
  try {
    const missing = await admin(server, ["tasks", "--failed"]);
    assert.equal(missing.code, 2);
    assert.match(
      missing.stderr,
      /^\S*deno task (--config \S+ )?tasks: 127\.0\.0\.1:\d+ needs a token: set ASYNCTASK_TOKEN \(or pass --token\)/,
    );
    const wrong = await admin(server, ["status"], { ASYNCTASK_TOKEN: "guess" });
    assert.equal(wrong.code, 2);
    assert.equal(wrong.stderr, "./deno task status: the server refused the token — check --token or ASYNCTASK_TOKEN\n");
    const right = await admin(server, ["status", "--json"], { ASYNCTASK_TOKEN: "admin-secret" });
    assert.equal(right.code, 0, right.stderr);
    assert.equal(JSON.parse(right.stdout).accepted, 0);
    const byFlag = await admin(server, ["cancel", "1", "--token", "admin-secret"]);
    assert.equal(byFlag.code, 1, "authenticated, then refused: no task 1");
    assert.match(byFlag.stderr, /not_found/);
  } finally {
    await server.shutdown(5000);
  }

  for (
    const [args, message] of [
      [
        ["retry", "seven"],
        /retry: "seven" is not a task id: ids are whole numbers like 7, as `.*tasks --failed` shows them\n$/,
      ],
      [["cancel"], /cancel: name the task\(s\) to cancel, e.g. `.*cancel 7`; `.*tasks --running` lists them\n$/],
      [["status", "--prot", "1"], /status: unknown flag --prot — did you mean --port\?\n$/],
    ] as const
  ) {
    const r = await runCli([...args]);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, message);
  }
});

Deno.test("every admin command has --help: its usage as the user runs it, and its flags", async () => {
  for (
    const [sub, usage] of [
      ["status", "status [flags]"],
      ["tasks", "tasks --failed|--running|--queued|--scheduled [flags]"],
      ["retry", "retry <id>… [flags]"],
      ["cancel", "cancel <id>… [flags]"],
    ]
  ) {
    const r = await runCli([sub, "--help"]);
    assert.equal(r.code, 0, sub);
    assert.match(r.stdout, new RegExp(`^Usage: .*${usage.replace(/[|[\]]/g, "\\$&")}\n`));
    for (const flag of ["--host", "--port", "--token", "--tls", "--ca", "--connect-timeout", "--json", "--help"]) {
      assert.ok(r.stdout.includes(flag), `${sub} --help lists ${flag}`);
    }
  }
  const top = await runCli(["--help"]);
  for (const sub of ["status", "tasks", "retry", "cancel"]) assert.match(top.stdout, new RegExp(`\n {2}${sub} +\\S`));
});

const noOpenssl = await opensslMissing();

Deno.test({
  name: `status over TLS with --ca; without --tls it says the port speaks TLS, exit 2${
    noOpenssl ? ` — SKIPPED: ${noOpenssl}` : ""
  }`,
  ignore: noOpenssl !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const certs = await makeCertificates(dir);
      const server = await startServer({ tls: { cert: certs.cert, key: certs.key } });
      try {
        const ok = await admin(server, ["status", "--ca", certs.paths.ca]);
        assert.equal(ok.code, 0, ok.stderr);
        assert.match(ok.stdout, /^server 127\.0\.0\.1:\d+, up/);
        const plain = await admin(server, ["tasks", "--failed"]);
        assert.equal(plain.code, 2);
        assert.equal(
          plain.stderr,
          `./deno task tasks: 127.0.0.1:${server.addr.port} speaks TLS: add --tls (and --ca <ca.pem> for a self-signed certificate)\n`,
        );
      } finally {
        await server.shutdown(5000);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("pause and resume: tasks of a name wait, then run; an unknown name is refused, exit 1", async () => {
  const server = await startServer({ defaultTask: "echo" });
  const port = String(server.addr.port);
  const c = await LineClient.connect(server.addr.port);
  try {
    const paused = await runCli(["pause", "--port", port, "echo"]);
    assert.equal(paused.code, 0, paused.stderr);
    assert.equal(paused.stdout, "paused now: echo\n");
    await c.send("waits");
    assert.equal(await c.next(), "ACCEPTED 1 echo queued");
    await c.send("/status 1");
    assert.match(await c.next(), /^STATUS 1 queued paused/);
    const resumed = await runCli(["resume", "--port", port]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(resumed.stdout, "paused now: nothing\n");
    assert.equal(await c.next(), "DONE 1 waits");
    const unknown = await runCli(["pause", "--port", port, "nosuch"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /pause: nosuch was not paused: unknown_task — no task named "nosuch"/);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

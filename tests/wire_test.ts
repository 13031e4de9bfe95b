/**
 * Wire protocol v1 through a real server on a real port with real workers: round trips in text and
 * JSON, every error code of the core, ordering under pipelining, hostile bytes.
 */
import assert from "node:assert/strict";
import { FIXTURE_HANDLERS, LineClient, startServer, untilReply } from "./helpers.ts";

/** Runs `fn` with a fresh server and client, then shuts both down. */
async function withServer(
  opts: Parameters<typeof startServer>[0],
  fn: (c: LineClient, port: number) => Promise<void>,
): Promise<void> {
  const server = await startServer(opts);
  const client = await LineClient.connect(server.addr.port);
  try {
    await fn(client, server.addr.port);
  } finally {
    await client.close();
    await server.shutdown(5000);
  }
}

Deno.test("text: a phone number is ACCEPTED at once and DONE after --sms-delay, on the same connection", async () => {
  await withServer({ smsDelayMs: 100 }, async (c) => {
    await c.send("138 0013-8000");
    assert.match(await c.next(), /^ACCEPTED 1 sending SMS to 13800138000/);
    const done = await c.next();
    assert.match(done, /^DONE 1 \{"phone":"13800138000","sent_at":"\d{4}-\d\d-\d\dT/);
  });
});

Deno.test("text: /task names a task; /ping, /stats, /status answer at once", async () => {
  await withServer({}, async (c) => {
    await c.send("/task echo hello world", "/ping");
    assert.deepEqual(await c.next(), "ACCEPTED 1 echo queued");
    assert.deepEqual(await c.next(), "PONG");
    assert.deepEqual(await c.next(), "DONE 1 hello world");
    await c.send("/status 1", "/stats");
    assert.deepEqual(await c.next(), "STATUS 1 done hello world");
    const stats = JSON.parse((await c.next()).replace(/^STATS /, ""));
    assert.deepEqual([stats.accepted, stats.done, stats.failed, stats.connections], [1, 1, 0, 1]);
    assert.deepEqual(stats.workers.length, 4);
    assert.deepEqual(stats.tasks, ["sms", "echo", "sleep"]);
  });
});

Deno.test("json: task round trip echoes the client's id and carries worker, attempts, ms", async () => {
  await withServer({}, async (c) => {
    await c.send(JSON.stringify({ task: "echo", data: { a: [1, 2] }, id: "req-1" }));
    assert.deepEqual(JSON.parse(await c.next()), { type: "accepted", id: "req-1", task_id: 1 });
    const done = JSON.parse(await c.next());
    assert.deepEqual([done.type, done.id, done.task_id, done.result, done.attempts], [
      "done",
      "req-1",
      1,
      { a: [1, 2] },
      1,
    ]);
    assert.ok(done.worker >= 1 && done.worker <= 4, `worker ${done.worker}`);
    assert.deepEqual(typeof done.ms, "number");
    await c.send('{"cmd":"status","task_id":1,"id":7}', '{"cmd":"ping"}', '{"cmd":"stats","id":"s"}');
    assert.deepEqual(JSON.parse(await c.next()), {
      type: "status",
      id: 7,
      task_id: 1,
      state: "done",
      result: { a: [1, 2] },
      attempts: 1,
    });
    assert.deepEqual(JSON.parse(await c.next()), { type: "pong" });
    const stats = JSON.parse(await c.next());
    assert.deepEqual([stats.type, stats.id, stats.accepted], ["stats", "s", 1]);
  });
});

Deno.test("json: a request without a task goes to the default task (--task)", async () => {
  await withServer({ defaultTask: "echo" }, async (c) => {
    await c.send('{"data":"x"}', "plain");
    assert.deepEqual(JSON.parse(await c.next()).type, "accepted");
    assert.deepEqual(await c.next(), "ACCEPTED 2 echo queued");
    const finals = await c.take(2);
    assert.ok(finals.includes("DONE 2 plain"), finals.join("\n"));
  });
});

Deno.test("every error code of the core gets one clear ERROR line, and the connection stays usable", async () => {
  await withServer({ modules: [FIXTURE_HANDLERS] }, async (c) => {
    const cases: [string, RegExp][] = [
      ["{not json", /^\{"type":"error","error":\{"code":"bad_json","message":"not valid JSON: /],
      ["[1,2]", /^ERROR invalid_data "\[1,2\]" is not a phone number/],
      ['{"task":"echo","data":1,"extra":true}', /"code":"bad_request","message":"unknown field \\"extra\\"/],
      ['{"task":5}', /"code":"bad_request","message":"\\"task\\" must be a string/],
      ['{"task":"echo","id":{"x":1}}', /"code":"bad_request","message":"\\"id\\" must be a string/],
      ['{"cmd":"nope"}', /"code":"bad_request","message":"unknown \\"cmd\\" \\"nope\\"/],
      [
        '{"cmd":"status","task_id":-1}',
        /"code":"bad_request","message":"\\"task_id\\" must be a positive whole number/,
      ],
      ["/nope", /^ERROR bad_request unknown command \/nope; commands are/],
      ["/status abc", /^ERROR bad_request usage: \/status <task_id>/],
      ["/status 999", /^ERROR not_found no task 999 has been accepted by this server \(none yet\)/],
      [
        "/task",
        /^ERROR bad_request usage: \/task <name> \[--priority N\] \[--delay D \| --run-at T\] \[--unique KEY\] <payload>/,
      ],
      ["/task nosuch x", /^ERROR unknown_task no task named "nosuch"; this server runs sms, echo, sleep, fail/],
      ['{"task":"nosuch","id":3}', /^\{"type":"error","id":3,"error":\{"code":"unknown_task"/],
      ["hello", /^ERROR invalid_data "hello" is not a phone number/],
      ["/task sleep soon", /^ERROR invalid_data sleep needs a whole number of milliseconds/],
      ['{"task":"sms","data":{"phone":42}}', /"code":"invalid_data","message":"sms needs a phone number as text/],
      ["a\u0000b", /^ERROR bad_request the line holds the control character U\+0000 at column 2/],
    ];
    for (const [line, expected] of cases) {
      await c.send(line);
      assert.match(await c.next(), expected, `for ${JSON.stringify(line)}`);
    }
    // Not UTF-8: 0xff can never appear in UTF-8.
    await c.sendRaw(new Uint8Array([0x31, 0xff, 0x32, 0x0a]));
    assert.deepEqual(
      await c.next(),
      "ERROR bad_request the line is not valid UTF-8; send UTF-8 text or a JSON request",
    );
    // handler_error: the handler threw; the worker lives on and the connection too.
    await c.send("/task fail the printer is on fire", "/task fail ok");
    assert.deepEqual(await c.next(), "ACCEPTED 1 fail task queued");
    assert.deepEqual(await c.next(), "ACCEPTED 2 fail task queued");
    const finals = (await c.take(2)).sort();
    assert.deepEqual(finals, ["DONE 2 fine", "FAILED 1 handler_error the printer is on fire"]);
    await c.send('{"cmd":"status","task_id":1}');
    assert.deepEqual(JSON.parse(await c.next()), {
      type: "status",
      task_id: 1,
      state: "failed",
      error: { code: "handler_error", message: "the printer is on fire" },
      attempts: 1,
    });
    // A result that cannot travel back from the worker fails that task only.
    await c.send('{"task":"uncloneable","id":"u"}');
    assert.deepEqual(JSON.parse(await c.next()).type, "accepted");
    const failed = JSON.parse(await c.next());
    assert.deepEqual([failed.type, failed.id, failed.error.code], ["failed", "u", "handler_error"]);
    assert.match(failed.error.message, /cannot be sent as JSON/);
    await c.send("/ping");
    assert.deepEqual(await c.next(), "PONG");
  });
});

Deno.test("line_too_long: answered, then the connection is closed; other connections are unharmed", async () => {
  await withServer({ maxLine: 1024, defaultTask: "echo" }, async (c, port) => {
    const other = await LineClient.connect(port);
    try {
      await c.send("short", "x".repeat(2000));
      assert.deepEqual(await c.next(), "ACCEPTED 1 echo queued");
      assert.match(await c.next(), /^ERROR line_too_long the line is longer than --max-line 1KiB; closing/);
      await c.closedByServer();
      // An over-long line that never ends is caught too, without buffering it whole.
      await other.sendRaw("y".repeat(4096));
      assert.match(await other.next(), /^ERROR line_too_long/);
      await other.closedByServer();
      const third = await LineClient.connect(port);
      await third.send("/ping");
      assert.deepEqual(await third.next(), "PONG");
      await third.close();
    } finally {
      await other.close();
    }
  });
});

Deno.test("framing: lines split across many packets, CRLF, blank lines, many lines in one packet", async () => {
  await withServer({ defaultTask: "echo" }, async (c) => {
    for (const piece of ["he", "ll", "o wor", "ld\r", "\n\n   \n"]) {
      await c.sendRaw(piece);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(await c.next(), "ACCEPTED 1 echo queued");
    assert.deepEqual(await c.next(), "DONE 1 hello world");
    await c.sendRaw("a\r\nb\nc\r\n");
    const lines = await c.take(6);
    assert.deepEqual(lines.slice(0, 3), ["ACCEPTED 2 echo queued", "ACCEPTED 3 echo queued", "ACCEPTED 4 echo queued"]);
    assert.deepEqual(lines.slice(3).sort(), ["DONE 2 a", "DONE 3 b", "DONE 4 c"]);
  });
});

Deno.test("ordering: under pipelining, immediate replies come in request order and no DONE precedes its ACCEPTED", async () => {
  await withServer({ defaultTask: "echo" }, async (c) => {
    const requests: string[] = [];
    for (let i = 0; i < 2000; i++) {
      requests.push(i % 10 === 3 ? "/task nosuch x" : i % 10 === 7 ? "/ping" : `m${i}`);
    }
    await c.send(...requests);
    const tasks = requests.filter((r) => r.startsWith("m")).length;
    const lines = await c.take(requests.length + tasks, 30_000);
    const immediate = lines.filter((l) => !l.startsWith("DONE"));
    assert.deepEqual(immediate.length, requests.length);
    const seen = new Set<number>();
    let nextId = 1;
    for (let i = 0, k = 0; i < lines.length; i++) {
      const l = lines[i];
      if (l.startsWith("DONE")) {
        const id = Number(l.split(" ")[1]);
        assert.ok(seen.has(id), `DONE ${id} came before its ACCEPTED`);
        seen.delete(id);
        continue;
      }
      const req = requests[k++];
      if (req.startsWith("m")) {
        assert.deepEqual(l, `ACCEPTED ${nextId} echo queued`);
        seen.add(nextId++);
      } else if (req === "/ping") assert.deepEqual(l, "PONG");
      else assert.match(l, /^ERROR unknown_task/);
    }
    assert.deepEqual(seen.size, 0, "every accepted task got exactly one DONE");
  });
});

Deno.test("/status works from a second connection after the first has closed", async () => {
  await withServer({}, async (c, port) => {
    await c.send("/task sleep 200");
    assert.deepEqual(await c.next(), "ACCEPTED 1 sleeping 200 ms");
    await c.close();
    const second = await LineClient.connect(port);
    try {
      await second.send("/status 1");
      assert.match(await second.next(), /^STATUS 1 (running|queued|done)/);
      assert.equal(await untilReply(second, "/status 1", /^STATUS 1 done/), 'STATUS 1 done {"slept_ms":200}');
    } finally {
      await second.close();
    }
  });
});

Deno.test("a client that half-closes (EOF) still gets its final replies, then the server closes", async () => {
  await withServer({}, async (c) => {
    await c.send("/task sleep 100");
    await c.conn.closeWrite();
    assert.deepEqual(await c.next(), "ACCEPTED 1 sleeping 100 ms");
    assert.deepEqual(await c.next(), 'DONE 1 {"slept_ms":100}');
    await c.closedByServer();
  });
});

Deno.test("/quit answers BYE and closes; results stay available to /status", async () => {
  await withServer({}, async (c, port) => {
    await c.send("/task sleep 50", "/quit", "/ping");
    assert.deepEqual(await c.take(2), ["ACCEPTED 1 sleeping 50 ms", "BYE"]);
    await c.closedByServer();
    assert.deepEqual(c.lines.length, 2, "nothing after BYE");
    const second = await LineClient.connect(port);
    try {
      assert.equal(await untilReply(second, "/status 1", /^STATUS 1 done/), 'STATUS 1 done {"slept_ms":50}');
    } finally {
      await second.close();
    }
  });
});

Deno.test("results expire after --result-ttl: /status then says unknown", async () => {
  await withServer({ resultTtlMs: 100, defaultTask: "echo" }, async (c) => {
    await c.send("x");
    assert.deepEqual(await c.take(2), ["ACCEPTED 1 echo queued", "DONE 1 x"]);
    // Past the TTL, the next sweep (every second) forgets it.
    assert.equal(await untilReply(c, "/status 1", /^STATUS 1 unknown$/), "STATUS 1 unknown");
  });
});

Deno.test("--accept-hold: a slow task's ACCEPTED comes within the hold, not with its DONE; a fast one's comes before its DONE", async () => {
  await withServer({ acceptHoldMs: 50 }, async (c) => {
    await c.send("/task sleep 3000");
    // Held at most 50 ms: well before the task's end, whatever the machine's load.
    assert.equal(await c.next(1500), "ACCEPTED 1 sleeping 3000 ms");
    await c.send("/task echo a", "/task echo b");
    const lines = await c.take(4);
    assert.deepEqual(lines.slice(0, 2), ["ACCEPTED 2 echo queued", "ACCEPTED 3 echo queued"]);
    assert.deepEqual(lines.slice(2).sort(), ["DONE 2 a", "DONE 3 b"]);
    assert.equal(await c.next(), 'DONE 1 {"slept_ms":3000}');
  });
});

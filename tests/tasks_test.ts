/**
 * Tasks declared in a config file's `tasks` map: command, webhook and module handlers, run for
 * real — child processes, an HTTP server on loopback that checks the signature, module files —
 * through a real server and real sockets. Also the config's per-task limits and its mistakes.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseTasks } from "../task/config.ts";
import { verifySignature } from "../task/handlers/webhook.ts";
import type { ServeOptions, TaskServer } from "../server/mod.ts";
import { eventually, LineClient, ROOT, runCli, spawnServe, startServer } from "./helpers.ts";

/** Writes `files` (name → text; names ending in .sh are made executable) into a new directory. */
async function scratch(files: Record<string, string> = {}): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "asynctask-tasks-" });
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(join(dir, name), text);
    if (name.endsWith(".sh")) await Deno.chmod(join(dir, name), 0o755);
  }
  return dir;
}

/** Starts a server with `tasks` read as the `tasks` section of `<dir>/asynctask.json`. */
async function serveTasks(
  dir: string,
  tasks: Record<string, unknown>,
  opts: Partial<ServeOptions> = {},
): Promise<{ server: TaskServer; client: LineClient }> {
  const file = join(dir, "asynctask.json");
  await Deno.writeTextFile(file, JSON.stringify({ tasks }, null, 2));
  const server = await startServer({
    workers: 2,
    retryBackoffMs: 50,
    defaultTask: undefined, // a tasks map without sms has no default task
    ...opts,
    tasks: parseTasks(tasks, file),
  });
  return { server, client: await LineClient.connect(server.addr.port) };
}

/** Reads lines until the final reply of task `id`; returns every line about it. */
async function linesUntilFinal(client: LineClient, id: number, timeoutMs = 15_000): Promise<string[]> {
  const seen: string[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = await client.next(Math.max(1, deadline - Date.now()));
    const m = /^(?:\{.*"task_id":(\d+)|[A-Z]+ (\d+))/.exec(line);
    if (m && Number(m[1] ?? m[2]) === id) seen.push(line);
    if (
      new RegExp(`^(DONE|FAILED) ${id} `).test(line) ||
      (line.includes(`"task_id":${id},`) && /"type":"(done|failed)"/.test(line))
    ) {
      return seen;
    }
  }
}

const SEND = `#!/bin/sh
# reads the data, reports progress, answers with JSON that shows what it got
data=$(cat)
echo "progress: 30 starting" >&2
echo "a warning that is not progress" >&2
sleep 0.3 # reports made within one moment are merged: only the latest is sent
echo "progress: 90% nearly there" >&2
printf '{"data":%s,"id":"%s","task":"%s","attempt":"%s","token":"%s","mail":"%s","extra":"%s"}\\n' \\
  "$data" "$ASYNCTASK_TASK_ID" "$ASYNCTASK_TASK" "$ASYNCTASK_ATTEMPT" "\${ASYNCTASK_TOKEN:-unset}" "\${TEST_MAIL_SECRET:-unset}" "$EXTRA"
`;

Deno.test("command task: data on stdin, task env, stdout JSON as the result, stderr progress as PROGRESS", async () => {
  const dir = await scratch({ "send.sh": SEND });
  Deno.env.set("ASYNCTASK_TOKEN", "must-not-leak");
  Deno.env.set("TEST_MAIL_SECRET", "not-for-commands-either");
  const { server, client } = await serveTasks(dir, {
    notify: { kind: "command", command: ["./send.sh"], env: { EXTRA: "from-config" } },
    mail: { kind: "webhook", url: "http://127.0.0.1:9/", "secret-env": "TEST_MAIL_SECRET" },
  });
  try {
    await client.send('{"task":"notify","data":{"to":"ana","n":[1,2]},"id":"a"}');
    assert.equal(await client.next(), '{"type":"accepted","id":"a","task_id":1}');
    const lines = await linesUntilFinal(client, 1);
    const replies = lines.map((l) => JSON.parse(l));
    assert.deepEqual(replies.filter((r) => r.type === "progress").map((r) => [r.progress, r.message]), [
      [30, "starting"],
      [90, "nearly there"],
    ]);
    const done = replies.at(-1);
    assert.equal(done.type, "done");
    assert.deepEqual(done.result, {
      data: { to: "ana", n: [1, 2] },
      id: "1",
      task: "notify",
      attempt: "1",
      token: "unset",
      mail: "unset",
      extra: "from-config",
    });
  } finally {
    Deno.env.delete("ASYNCTASK_TOKEN");
    Deno.env.delete("TEST_MAIL_SECRET");
    await client.close();
    await server.shutdown(5000);
  }
});

Deno.test("command task: exit 75 is retried (the client sees why and when), another exit fails at once with stderr's tail", async () => {
  const dir = await scratch({
    "flaky.sh": `#!/bin/sh
cat >/dev/null
if [ "$ASYNCTASK_ATTEMPT" -lt 3 ]; then echo "gateway busy (attempt $ASYNCTASK_ATTEMPT)" >&2; exit 75; fi
echo "sent on attempt $ASYNCTASK_ATTEMPT"
`,
    "broken.sh": `#!/bin/sh
echo "first line of noise" >&2
echo "no such recipient" >&2
exit 3
`,
  });
  const { server, client } = await serveTasks(dir, {
    flaky: { kind: "command", command: ["./flaky.sh"], retries: 5 },
    broken: { kind: "command", command: ["./broken.sh"], retries: 5 },
  });
  try {
    await client.send("/task flaky x");
    assert.equal(await client.next(), "ACCEPTED 1 flaky task queued");
    const flaky = await linesUntilFinal(client, 1);
    assert.equal(flaky.length, 3, flaky.join("\n"));
    assert.match(
      flaky[0],
      /^PROGRESS 1 0 attempt 1 of 6 failed \(handler_error: flaky\.sh asked for a retry \(exit code 75\): gateway busy \(attempt 1\)\); retrying in \d+ms$/,
    );
    assert.match(flaky[1], /^PROGRESS 1 0 attempt 2 of 6 failed/);
    assert.equal(flaky[2], "DONE 1 sent on attempt 3");
    await client.send('{"task":"broken","data":null}');
    await client.next();
    const [failed] = await linesUntilFinal(client, 2);
    const reply = JSON.parse(failed);
    assert.equal(reply.attempts, 1, "a plain non-zero exit is not retried");
    assert.equal(reply.error.code, "handler_error");
    assert.equal(reply.error.message, "broken.sh failed with exit code 3: first line of noise\nno such recipient");
    await client.send("/stats");
    const stats = JSON.parse((await client.next()).slice("STATS ".length));
    assert.deepEqual(stats.by_task, {
      flaky: { accepted: 1, done: 1, failed: 0, retried: 2 },
      broken: { accepted: 1, done: 0, failed: 1, retried: 0 },
    });
  } finally {
    await client.close();
    await server.shutdown(5000);
  }
});

function alive(pid: number): boolean {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return !/^State:\s+Z/m.test(status); // a zombie has ended; only its exit status waits to be collected
  } catch {
    return false;
  }
}

Deno.test("command task: its timeout kills the whole process group, grandchildren included, and the task is retried", async () => {
  const dir = await scratch({
    "hang.sh": `#!/bin/sh
cat >/dev/null
if [ "$ASYNCTASK_ATTEMPT" = 2 ]; then echo "quick the second time"; exit 0; fi
sleep 300 &
echo $! > "$PIDS/grandchild-$ASYNCTASK_TASK_ID"
echo $$ > "$PIDS/child-$ASYNCTASK_TASK_ID"
sleep 300
`,
  });
  const { server, client } = await serveTasks(dir, {
    hang: { kind: "command", command: ["./hang.sh"], env: { PIDS: dir }, timeout: "1500ms", retries: 1 },
  }, { taskTimeoutMs: 60_000 });
  try {
    await client.send("/task hang x");
    await client.next();
    const lines = await linesUntilFinal(client, 1);
    assert.match(
      lines[0],
      /^PROGRESS 1 0 attempt 1 of 2 failed \(timeout: the task ran longer than its timeout 1.5s\)/,
    );
    assert.equal(lines.at(-1), "DONE 1 quick the second time", lines.join("\n"));
    const child = Number(await Deno.readTextFile(join(dir, "child-1")));
    const grandchild = Number(await Deno.readTextFile(join(dir, "grandchild-1")));
    await eventually("the script and its background sleep to be killed", () => !alive(child) && !alive(grandchild));
  } finally {
    await client.close();
    await server.shutdown(5000);
  }
});

Deno.test("command task: stdout beyond max-output is cut; text output is the result as text", async () => {
  const dir = await scratch({ "big.sh": "#!/bin/sh\nhead -c 100000 /dev/zero | tr '\\0' 'x'\n" });
  const { server, client } = await serveTasks(dir, {
    big: { kind: "command", command: ["./big.sh"], "max-output": "1KiB" },
  });
  try {
    await client.send('{"task":"big","data":1}');
    await client.next();
    const [done] = await linesUntilFinal(client, 1);
    assert.equal(JSON.parse(done).result, "x".repeat(1024));
  } finally {
    await client.close();
    await server.shutdown(5000);
  }
});

Deno.test("config tasks: a JSON Schema refuses bad data before ACCEPTED with the schema's message; concurrency caps runs of one task", async () => {
  const dir = await scratch({
    "one.ts": `export default async (data: number, ctx: { progress(p: number, m?: string): void }) => {
  ctx.progress(0, "started");
  await new Promise((r) => setTimeout(r, 150));
  return data * 2;
};`,
  });
  const { server, client } = await serveTasks(dir, {
    one: {
      kind: "module",
      module: "./one.ts",
      concurrency: 2,
      schema: { type: "integer", minimum: 1, maximum: 1000 },
    },
  }, { concurrency: 64 });
  try {
    await client.send('{"task":"one","data":"7"}', '{"task":"one","data":0}');
    assert.equal(
      await client.next(),
      '{"type":"error","error":{"code":"invalid_data","message":"one: data must be integer"}}',
    );
    assert.equal(
      await client.next(),
      '{"type":"error","error":{"code":"invalid_data","message":"one: data must be >= 1"}}',
    );
    // (A text payload is always a string: numbers go in JSON requests.)
    await client.send(...Array.from({ length: 8 }, (_, i) => `{"task":"one","data":${i + 1}}`));
    const lines: string[] = [];
    while (lines.filter((l) => l.includes('"type":"done"')).length < 8) lines.push(await client.next());
    // A task starts only once its worker got it, after an earlier run of the task settled: the
    // order of PROGRESS (start) and DONE lines in the stream shows how many ran at once.
    let running = 0;
    let peak = 0;
    for (const l of lines) {
      if (l.includes('"type":"progress"')) peak = Math.max(peak, ++running);
      if (l.includes('"type":"done"')) running--;
    }
    assert.equal(peak, 2, lines.join("\n"));
    const results = lines.filter((l) => l.includes('"type":"done"')).map((l) => JSON.parse(l).result);
    assert.deepEqual(results.sort((a, b) => a - b), [2, 4, 6, 8, 10, 12, 14, 16]);
  } finally {
    await client.close();
    await server.shutdown(5000);
  }
});

/** A webhook target on loopback that checks the signature and answers as `answer` says. */
function webhookTarget(
  secret: string,
  answer: (body: { task_id: number; attempt: number; data: unknown }) => Response,
) {
  const calls: { at: number; body: { task_id: number; attempt: number; data: unknown }; headers: Headers }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const raw = await req.text();
    if (!(await verifySignature(secret, req.headers.get("X-Asynctask-Signature"), raw))) {
      return new Response("bad signature", { status: 401 });
    }
    const body = JSON.parse(raw);
    calls.push({ at: performance.now(), body, headers: req.headers });
    return answer(body);
  });
  return { server, calls, url: `http://127.0.0.1:${server.addr.port}/hook` };
}

Deno.test("webhook task: signed POST, 2xx body as the result; 503 + Retry-After retried after that delay; 4xx permanent; a wrong secret is refused", async () => {
  const target = webhookTarget("s3cret", ({ data }) => {
    const d = data as { case: string };
    if (d.case === "ok") return Response.json({ message_id: "m-1" });
    if (d.case === "busy" && target.calls.filter((c) => (c.body.data as { case: string }).case === "busy").length < 2) {
      return new Response("overloaded", { status: 503, headers: { "Retry-After": "1" } });
    }
    if (d.case === "busy") return new Response("sent late");
    return new Response(JSON.stringify({ error: "no such mailbox" }), { status: 422 });
  });
  const dir = await scratch();
  Deno.env.set("TEST_HOOK_SECRET", "s3cret");
  const { server, client } = await serveTasks(dir, {
    mail: {
      kind: "webhook",
      url: target.url,
      "secret-env": "TEST_HOOK_SECRET",
      retries: 3,
      headers: { "X-Team": "ops" },
    },
    forged: { kind: "webhook", url: target.url, secret: "wrong", retries: 3 },
  }, { retryBackoffMs: 10 });
  try {
    await client.send(
      '{"task":"mail","data":{"case":"ok"}}',
      '{"task":"mail","data":{"case":"busy"}}',
      '{"task":"mail","data":{"case":"bad"}}',
      '{"task":"forged","data":{"case":"ok"}}',
    );
    for (let i = 0; i < 4; i++) assert.match(await client.next(), /"type":"accepted"/);
    const finals = new Map<number, Record<string, unknown>>();
    const progress: string[] = [];
    while (finals.size < 4) {
      const r = JSON.parse(await client.next());
      if (r.type === "progress") progress.push(r.message);
      else finals.set(r.task_id, r);
    }
    assert.deepEqual(finals.get(1)!.result, { message_id: "m-1" });
    const first = target.calls.find((c) => c.body.task_id === 1)!;
    assert.equal(first.headers.get("X-Team"), "ops");
    assert.equal(first.headers.get("Content-Type"), "application/json");
    assert.equal(first.body.attempt, 1);

    assert.equal(finals.get(2)!.result, "sent late");
    assert.equal(finals.get(2)!.attempts, 2);
    const busy = target.calls.filter((c) => c.body.task_id === 2);
    assert.equal(busy.length, 2);
    assert.ok(busy[1].at - busy[0].at >= 900, `Retry-After: 1 honoured (waited ${busy[1].at - busy[0].at} ms)`);
    assert.ok(
      progress.some((m) =>
        /attempt 1 of 4 failed \(handler_error: .* answered 503 .*overloaded\); retrying in 1s/.test(m)
      ),
      progress.join("\n"),
    );

    assert.deepEqual(finals.get(3)!.error, {
      code: "handler_error",
      message: `${target.url} answered 422 Unprocessable Entity: {"error":"no such mailbox"}`,
    });
    assert.equal(finals.get(3)!.attempts, 1, "a 4xx is not retried");
    assert.match((finals.get(4)!.error as { message: string }).message, /answered 401 Unauthorized: bad signature/);
    assert.equal(finals.get(4)!.attempts, 1);
  } finally {
    Deno.env.delete("TEST_HOOK_SECRET");
    await client.close();
    await server.shutdown(5000);
    await target.server.shutdown();
  }
});

Deno.test("webhook task: an unreachable URL is retried, then fails with the network error", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close(); // nothing listens there now
  const dir = await scratch();
  const { server, client } = await serveTasks(dir, {
    hook: { kind: "webhook", url: `http://127.0.0.1:${port}/`, retries: 2 },
  }, { retryBackoffMs: 10 });
  try {
    await client.send("/task hook x");
    await client.next();
    const lines = await linesUntilFinal(client, 1);
    assert.equal(lines.filter((l) => l.startsWith("PROGRESS 1 0 attempt")).length, 2);
    assert.match(
      lines.at(-1)!,
      new RegExp(
        `^FAILED 1 handler_error cannot reach http://127.0.0.1:${port}/: tcp connect error: Connection refused.*\\(after 3 attempts\\)$`,
      ),
    );
  } finally {
    await client.close();
    await server.shutdown(5000);
  }
});

Deno.test("module task: default export runs in the workers with ctx (progress, logger, attempt); validate refuses with invalid_data", async () => {
  const dir = await scratch({
    "resize.ts": `export function validate(data: unknown) {
  if (typeof data !== "object" || data === null || typeof (data as { w?: unknown }).w !== "number") {
    throw new Error('give {"w": <width>}');
  }
  return { w: Math.round((data as { w: number }).w) };
}
export default async (data: { w: number }, ctx: { taskId: number; attempt: number; task: string; signal: AbortSignal; progress(p: number, m?: string): void; logger: { info(m: string, p?: Record<string, unknown>): void } }) => {
  ctx.progress(50, "half");
  ctx.logger.info("resizing to {w}", { w: data.w });
  await new Promise((r) => setTimeout(r, 100));
  return { w: data.w, task: ctx.task, id: ctx.taskId, attempt: ctx.attempt, aborted: ctx.signal.aborted };
};`,
  });
  const { server, client } = await serveTasks(dir, { resize: { kind: "module", module: "./resize.ts" } });
  try {
    await client.send('{"task":"resize","data":{"w":"wide"}}', '{"task":"resize","data":{"w":99.6}}');
    assert.equal(
      await client.next(),
      '{"type":"error","error":{"code":"invalid_data","message":"give {\\"w\\": <width>}"}}',
    );
    assert.equal(await client.next(), '{"type":"accepted","task_id":1}');
    const lines = (await linesUntilFinal(client, 1)).map((l) => JSON.parse(l));
    assert.deepEqual(lines[0], { type: "progress", task_id: 1, progress: 50, message: "half" });
    assert.deepEqual(lines[1].result, { w: 100, task: "resize", id: 1, attempt: 1, aborted: false });
  } finally {
    await client.close();
    await server.shutdown(5000);
  }
});

Deno.test("a bad config stops startup with exit 2 and a message naming the file, the key and the fix", async () => {
  const dir = await scratch({ "ok.sh": "#!/bin/sh\necho ok\n", "notexec.sh": "#!/bin/sh\n" });
  await Deno.chmod(join(dir, "notexec.sh"), 0o644);
  const cases: [unknown, RegExp][] = [
    [
      { tasks: { sms: { kind: "shell", command: ["./ok.sh"] } } },
      /tasks\.sms\.kind: must be one of "command", "webhook", "module"/,
    ],
    [
      { tasks: { sms: { kind: "command", command: "./ok.sh --fast" } } },
      /tasks\.sms\.command: must be a non-empty array: the program and its arguments/,
    ],
    [
      { tasks: { sms: { kind: "command", command: ["./notexec.sh"] } } },
      /notexec\.sh is not an executable file — check the path \(relative to the config file\) and chmod \+x/,
    ],
    [
      { tasks: { sms: { kind: "command", command: ["no-such-program-xyz"] } } },
      /"no-such-program-xyz" was not found in PATH/,
    ],
    [
      { tasks: { sms: { kind: "command", command: ["./ok.sh"], timeout: "5 secs" } } },
      /tasks\.sms\.timeout: "5 secs" has an unknown unit "secs"/,
    ],
    [
      { tasks: { sms: { kind: "command", command: ["./ok.sh"], url: "http://x" } } },
      /tasks\.sms\.url: is not a setting of a command task; its settings are kind, description/,
    ],
    [
      { tasks: { sms: { kind: "command", command: ["./ok.sh"], schema: { type: "strng" } } } },
      /tasks\.sms\.schema: is not a valid JSON Schema: schema is invalid: data\/type must be equal to one of the allowed values/,
    ],
    [
      { tasks: { mail: { kind: "webhook", url: "ftp://x" } } },
      /tasks\.mail\.url: "ftp:\/\/x" is not an http:\/\/ or https:\/\/ URL/,
    ],
    [
      { tasks: { mail: { kind: "webhook", url: "http://x", "secret-env": "NOT_SET_ANYWHERE_42" } } },
      /tasks\.mail\.secret-env: the environment variable NOT_SET_ANYWHERE_42 is not set/,
    ],
    [
      { tasks: { r: { kind: "module", module: "./missing.ts" } } },
      /tasks\.r\.module: no such file .*missing\.ts \(paths are relative to the config file\)/,
    ],
    [
      { tasks: { "bad name": { kind: "module", module: "./x.ts" } } },
      /tasks\.bad name: a task name is 1 to 64 letters/,
    ],
    [{ taks: {} }, /unknown key "taks" — did you mean "tasks"\?/],
    [
      { tasks: { mail: { kind: "builtin" } } },
      /tasks\.mail\.kind: "builtin" is for the built-in tasks, by their own name: sms, echo, sleep/,
    ],
  ];
  for (const [i, [config, expected]] of cases.entries()) {
    const file = join(dir, `bad-${i}.json`);
    await Deno.writeTextFile(file, JSON.stringify(config));
    const r = await runCli(["serve", "--port", "0", "--config", file]);
    assert.equal(r.code, 2, `${JSON.stringify(config)}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`config file ${file}`));
    assert.match(r.stderr, expected);
  }
});

Deno.test("a module task that does not load stops startup (exit 2) naming the file, the task and the module", async () => {
  const dir = await scratch({ "broken.ts": "export default 42;\n" });
  const file = join(dir, "asynctask.json");
  await Deno.writeTextFile(file, JSON.stringify({ tasks: { r: { kind: "module", module: "./broken.ts" } } }));
  const r = await runCli(["serve", "--port", "0", "--config", file]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(
      `config file ${file}: tasks\\.r: module file://.*broken\\.ts must export a default function \\(data, ctx\\) => result`,
    ),
  );
});

Deno.test("the README's example: examples/asynctask.json turns sms into a command that writes each message to a file, retries shown", async () => {
  const dir = await scratch();
  const outbox = join(dir, "outbox.txt");
  const file = join(ROOT, "examples", "asynctask.json");
  const config = JSON.parse(await Deno.readTextFile(file));
  config.tasks.sms.env = { ...config.tasks.sms.env, SMS_OUTBOX: outbox, SMS_DELAY: "0.1" };
  const server = await startServer({ retryBackoffMs: 50, tasks: parseTasks(config.tasks, file) });
  const client = await LineClient.connect(server.addr.port);
  try {
    await client.send("13800138000", "13800138001", "13800138002", "not-a-phone");
    const lines: string[] = [];
    while (lines.filter((l) => /^(DONE|FAILED|ERROR)/.test(l)).length < 4) lines.push(await client.next());
    assert.match(
      lines.find((l) => l.startsWith("ERROR"))!,
      /^ERROR invalid_data sms: data must match pattern ".*" — a phone number: an optional \+, then 5 to 24 digits/,
    );
    assert.equal(lines.filter((l) => l.startsWith("DONE")).length, 3, lines.join("\n"));
    assert.ok(
      lines.some((l) => /^PROGRESS 3 0 attempt 1 of 4 failed .*gateway busy.*; retrying in/.test(l)),
      lines.join("\n"),
    );
    assert.ok(lines.some((l) => /^PROGRESS 1 10 dialing the gateway for 13800138000$/.test(l)));
    const sent = (await Deno.readTextFile(outbox)).trim().split("\n").sort();
    assert.equal(sent.length, 3);
    assert.match(sent.join("\n"), /task 3\tattempt 2\tto 13800138002/);
  } finally {
    await client.close();
    await server.shutdown(5000);
  }
});

Deno.test("a timed-out run that ends late is not taken for the retry running on the same worker", async () => {
  const dir = await scratch({
    "late.ts": `// Both runs share this module (one worker): attempt 1 ends only once attempt 2 runs.
let secondStarted: () => void;
const second = new Promise<void>((r) => (secondStarted = r));
let firstGone: () => void;
const first = new Promise<void>((r) => (firstGone = r));
export default async (_d: unknown, ctx: { attempt: number; signal: AbortSignal; progress(p: number, m?: string): void }) => {
  if (ctx.attempt === 1) {
    await new Promise((r) => ctx.signal.addEventListener("abort", r)); // ignores its timeout…
    await second; // …until the retry runs on this same worker, then fails late
    ctx.progress(99, "late news from attempt 1");
    setTimeout(() => firstGone(), 50);
    throw new Error("attempt 1 gave up late");
  }
  secondStarted();
  await first;
  return "attempt 2 finished";
};`,
  });
  const { server, client } = await serveTasks(dir, {
    late: { kind: "module", module: "./late.ts", timeout: "200ms", retries: 1 },
  }, { workers: 1, retryBackoffMs: 10 });
  try {
    await client.send("/task late x");
    await client.next();
    const lines = await linesUntilFinal(client, 1);
    assert.equal(lines.at(-1), "DONE 1 attempt 2 finished", lines.join("\n"));
    assert.ok(!lines.some((l) => l.includes("late news")), "attempt 1's late progress is not reported");
  } finally {
    await client.close();
    await server.shutdown(5000);
  }
});

Deno.test("with a tasks map, clients can name only declared tasks: built-ins only when declared, no default task unless declared", async () => {
  const dir = await scratch({ "ok.sh": "#!/bin/sh\necho ok\n" });
  const file = join(dir, "asynctask.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      tasks: { run: { kind: "command", command: ["./ok.sh"] }, echo: { kind: "builtin", retries: 2 } },
    }),
  );
  const server = await spawnServe(["--config", file]);
  const c = await LineClient.connect(server.port);
  try {
    await c.send("/task sleep 100000", "13800138000", "/task echo hi", '{"task":"run","data":1}');
    assert.equal(await c.next(), 'ERROR unknown_task no task named "sleep"; this server runs run, echo');
    assert.equal(
      await c.next(),
      'ERROR unknown_task this server has no default task: name one, /task <name> <payload> or {"task": "<name>", …}; this server runs run, echo',
    );
    const rest = await c.take(4);
    assert.ok(rest.includes("ACCEPTED 1 echo queued") && rest.includes("DONE 1 hi"), rest.join("\n"));
    assert.ok(rest.includes('{"type":"accepted","task_id":2}'), rest.join("\n"));
    assert.equal(rest.map((l) => l.startsWith("{") ? JSON.parse(l) : {}).find((r) => r.type === "done")?.result, "ok");
  } finally {
    await c.close();
    server.child.kill("SIGTERM");
    await server.exited();
  }
});

Deno.test("a forced stop (--shutdown-timeout ran out) kills the process groups of running command tasks", async () => {
  const dir = await scratch({
    "stubborn.sh": `#!/bin/sh
trap '' TERM
sleep 300 &
# Each pid file appears whole (written, then renamed): the test reads it once it exists.
echo $$ > "$PIDS/child.tmp" && mv "$PIDS/child.tmp" "$PIDS/child"
echo $! > "$PIDS/grandchild.tmp" && mv "$PIDS/grandchild.tmp" "$PIDS/grandchild"
wait
`,
  });
  const file = join(dir, "asynctask.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify({ tasks: { stubborn: { kind: "command", command: ["./stubborn.sh"], env: { PIDS: dir } } } }),
  );
  const server = await spawnServe(["--config", file, "--shutdown-timeout", "300ms"]);
  const c = await LineClient.connect(server.port);
  try {
    await c.send("/task stubborn x");
    assert.equal(await c.next(), "ACCEPTED 1 stubborn task queued");
    await eventually(
      "the script to start",
      async () => (await Deno.stat(join(dir, "grandchild")).catch(() => null)) !== null,
    );
    const child = Number(await Deno.readTextFile(join(dir, "child")));
    const grandchild = Number(await Deno.readTextFile(join(dir, "grandchild")));
    assert.ok(child > 0 && grandchild > 0, `pids read: ${child}, ${grandchild}`);
    assert.ok(alive(child) && alive(grandchild), "the script and its child run before the stop");
    server.child.kill("SIGTERM");
    assert.match(await c.next(), /^FAILED 1 shutting_down /);
    assert.equal((await server.exited()).code, 1);
    await eventually(
      "the script (which ignores SIGTERM) and its child to be killed",
      () => !alive(child) && !alive(grandchild),
    );
  } finally {
    await c.close();
  }
});

Deno.test("webhook task: a 2xx answer in NDJSON streams progress as it goes, then the result", async () => {
  const target = webhookTarget("k", () => {
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (const [p, m] of [[30, "rendering"], [80, "uploading"]] as const) {
          controller.enqueue(enc.encode(JSON.stringify({ progress: p, message: m }) + "\n"));
          await new Promise((r) => setTimeout(r, 150));
        }
        controller.enqueue(enc.encode(JSON.stringify({ result: { url: "https://cdn.example/r.pdf" } }) + "\n"));
        controller.close();
      },
    });
    return new Response(body, { headers: { "Content-Type": "application/x-ndjson" } });
  });
  const dir = await scratch();
  const { server, client } = await serveTasks(dir, { report: { kind: "webhook", url: target.url, secret: "k" } });
  try {
    await client.send("/task report q3");
    await client.next();
    assert.deepEqual(await linesUntilFinal(client, 1), [
      "PROGRESS 1 30 rendering",
      "PROGRESS 1 80 uploading",
      'DONE 1 {"url":"https://cdn.example/r.pdf"}',
    ]);
  } finally {
    await client.close();
    await server.shutdown(5000);
    await target.server.shutdown();
  }
});

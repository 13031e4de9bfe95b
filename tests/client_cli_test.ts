/**
 * `asynctask client` as a real child process against a real server: exit codes, piped stdin,
 * `--json`, and the interactive mode driven through a pseudo-terminal (`script` from util-linux).
 */
import assert from "node:assert/strict";
import { FIXTURE_HANDLERS, openTerminal, ROOT, runCli, startServer, terminalTest } from "./helpers.ts";
import { parseTasks } from "../task/config.ts";

/** Runs a terminal's command in English, whatever the locale of the test runner. */
const ENGLISH = "env -u LC_ALL -u LC_MESSAGES LANG=C.UTF-8";

/** A port nothing listens on: bound, then released. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

Deno.test("client --send: prints ACCEPTED then DONE, exit 0 when every task succeeded", async () => {
  const server = await startServer({ smsDelayMs: 50 });
  try {
    const r = await runCli([
      "client",
      "--port",
      String(server.addr.port),
      "--send",
      "13800138000",
      "--send",
      "+44 20 7946 0000",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 4, r.stdout);
    assert.match(lines[0], /^ACCEPTED 1 sending SMS to 13800138000/);
    assert.match(lines[1], /^ACCEPTED 2 sending SMS to \+442079460000/);
    assert.equal(lines.filter((l) => l.startsWith("DONE")).length, 2);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("client: exit 1 when a request is refused, and when a task fails", async () => {
  const server = await startServer({ modules: [FIXTURE_HANDLERS] });
  const port = String(server.addr.port);
  try {
    const refused = await runCli(["client", "--port", port, "--send", "not-a-phone"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /^ERROR invalid_data "not-a-phone" is not a phone number/);
    assert.match(refused.stderr, /0 accepted, 0 done, 0 failed, 1 refused/);
    const failed = await runCli(["client", "--port", port, "--task", "fail", "--send", "disk full"]);
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /^ACCEPTED \d+ fail task queued\nFAILED \d+ handler_error disk full\n$/);
    assert.match(failed.stderr, /1 accepted, 0 done, 1 failed, 0 refused/);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("client: exit 2 with a message naming the address, and serve as the user runs it, when no server listens", async () => {
  const port = freePort();
  // Run from the checkout's root, as the README says; INIT_CWD (`deno task`'s) must not leak in from the test runner.
  const out = await new Deno.Command("/usr/bin/env", {
    args: [
      "-u",
      "INIT_CWD",
      Deno.execPath(),
      "run",
      "-A",
      `${ROOT}main.ts`,
      "client",
      "--port",
      String(port),
      "--send",
      "1",
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const r = {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr.trim(),
    `./deno task client: cannot connect to 127.0.0.1:${port}: connection refused — is the server running? Start it with \`./deno task serve --port ${port}\``,
  );
  assert.equal(r.stdout, "");
});

Deno.test("client --task with a JSON object payload: sent as that task's data, not as a request of its own", async () => {
  const server = await startServer({});
  try {
    const r = await runCli([
      "client",
      "--port",
      String(server.addr.port),
      "--task",
      "echo",
      "--send",
      '{"to":"a@example.com","subject":"hi"}',
      "--send",
      "plain",
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // The JSON request gets JSON replies; the text line text replies.
    assert.match(r.stdout, /\{"type":"done","task_id":\d+,"result":\{"to":"a@example\.com","subject":"hi"\}/);
    assert.match(r.stdout, /\nDONE \d+ plain\n/);
    assert.doesNotMatch(r.stdout, /unknown field/);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("client without a token, against a server that needs one: says so, and how to give it; exit 1", async () => {
  const server = await startServer({ token: "client-secret" });
  const port = String(server.addr.port);
  try {
    const none = await runCli(["client", "--port", port, "--send", "13800138000"]);
    assert.equal(none.code, 1, none.stderr);
    assert.match(
      none.stderr,
      new RegExp(
        `^\\S*deno task (--config \\S+ )?client: 127\\.0\\.0\\.1:${port} needs a token: set ASYNCTASK_TOKEN ` +
          `\\(or pass --token\\) to the server's --token\n`,
      ),
    );
    const wrong = await runCli(["client", "--port", port, "--send", "13800138000"], {
      env: { ASYNCTASK_TOKEN: "wrong" },
    });
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, /client: the server refused the token — check --token or ASYNCTASK_TOKEN\n/);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("client --send: a number typed with a Chinese input method (full-width digits, ＋, ideographic spaces) is accepted", async () => {
  const server = await startServer({ smsDelayMs: 20 });
  try {
    const r = await runCli([
      "client",
      "--port",
      String(server.addr.port),
      "--send",
      "＋８６　１３８－００１３－８０００",
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^ACCEPTED 1 sending SMS to \+8613800138000/);
    assert.match(r.stdout, /\nDONE 1 \{"phone":"\+8613800138000"/);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("client --send: a script's refused command still fails it, and is named apart from refused tasks", async () => {
  const server = await startServer({});
  try {
    const r = await runCli(["client", "--port", String(server.addr.port), "--send", "/status 99"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^ERROR not_found/);
    assert.match(r.stderr, /0 accepted, 0 done, 0 failed, 0 refused, 1 command\(s\) refused/);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("client: lines piped on stdin are all sent, every final reply awaited; --json prints raw JSON", async () => {
  const server = await startServer({});
  const port = String(server.addr.port);
  try {
    const piped = await runCli(["client", "--port", port, "--task", "sleep"], { stdin: "30\n10\n\n20\n/ping\n" });
    assert.equal(piped.code, 0, piped.stderr);
    const lines = piped.stdout.trim().split("\n");
    assert.deepEqual(lines.slice(0, 4), [
      "ACCEPTED 1 sleeping 30 ms",
      "ACCEPTED 2 sleeping 10 ms",
      "ACCEPTED 3 sleeping 20 ms",
      "PONG",
    ]);
    assert.deepEqual(lines.slice(4).sort(), [
      'DONE 1 {"slept_ms":30}',
      'DONE 2 {"slept_ms":10}',
      'DONE 3 {"slept_ms":20}',
    ]);

    const json = await runCli(["client", "--port", port, "--json", "--task", "echo"], { stdin: "hi\n/status 1\n" });
    assert.equal(json.code, 0, json.stderr);
    const replies = json.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(replies.map((r) => r.type).sort(), ["accepted", "done", "status"]);
    assert.deepEqual(replies.find((r) => r.type === "done").result, "hi");
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("client: when the server goes away with tasks outstanding, it says which and exits 1", async () => {
  const server = await startServer({});
  const port = String(server.addr.port);
  const child = runCli(["client", "--port", port], { stdin: "/task sleep 800\n/task sleep 800\n/quit\n" });
  const r = await child;
  await server.shutdown(5000);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /ACCEPTED 1 sleeping 800 ms\nACCEPTED 2 sleeping 800 ms\nBYE\n/);
  assert.match(
    r.stderr,
    /the server closed the connection with 2 task\(s\) unfinished \(ids 1, 2\); look them up with `\/status <id>`/,
  );
});

terminalTest(
  "interactive client through a terminal: prompt, ACCEPTED, DONE without breaking the typed line, Ctrl-D waits",
  async () => {
    const server = await startServer({ smsDelayMs: 600 });
    const term = await openTerminal(
      `${ENGLISH} ${Deno.execPath()} run -A ${ROOT}main.ts client --port ${server.addr.port}`,
    );
    try {
      await term.waitFor(/phone number> /, "prompt");
      await term.type("13800138000\r");
      await term.waitFor(/ACCEPTED 1 sending SMS to 13800138000/, "ACCEPTED");
      await term.type("1390"); // half a number typed when the DONE arrives
      await term.waitFor(/DONE 1 \{"phone":"13800138000"/, "DONE");
      const afterDone = term.screen.slice(term.screen.lastIndexOf("DONE 1"));
      assert.match(afterDone, /phone number> 1390/, "the typed text is redrawn after the reply");
      await term.type("0139000\r");
      await term.waitFor(/ACCEPTED 2 sending SMS to 13900139000/, "second ACCEPTED");
      await term.type("\x04"); // Ctrl-D with one result outstanding
      await term.waitFor(/waiting for 1 outstanding result/, "wait message");
      await term.waitFor(/2 accepted, 2 done, 0 failed, 0 refused/, "summary");
      assert.ok(
        term.screen.indexOf("DONE 2") > term.screen.indexOf("waiting for 1 outstanding"),
        "DONE 2 came after Ctrl-D",
      );
      assert.equal((await term.status).code, 0);
    } finally {
      await term.close();
      await server.shutdown(5000);
    }
  },
);

terminalTest(
  "interactive client: PROGRESS shows as a live line per task with a bar, replaced by the final reply",
  async () => {
    const dir = await Deno.makeTempDir();
    const file = `${dir}/asynctask.json`;
    await Deno.writeTextFile(
      `${dir}/steps.ts`,
      `export default async (_d: unknown, ctx: { progress(p: number, m?: string): void }) => {
  for (const p of [30, 70]) {
    ctx.progress(p, "step " + p);
    await new Promise((r) => setTimeout(r, 400));
  }
  return "finished";
};`,
    );
    const server = await startServer({
      tasks: parseTasks({ steps: { kind: "module", module: "./steps.ts" } }, file),
      defaultTask: "steps",
    });
    const term = await openTerminal(
      `${ENGLISH} ${Deno.execPath()} run -A ${ROOT}main.ts client --task steps --port ${server.addr.port}`,
    );
    try {
      await term.waitFor(/steps payload> /, "prompt");
      await term.type("go\r");
      await term.waitFor(/task 1 \[███░░░░░░░\] {2}30% step 30/, "live line at 30%");
      await term.waitFor(/task 1 \[███████░░░\] {2}70% step 70/, "live line at 70%");
      await term.waitFor(/DONE 1 finished/, "DONE");
      const tail = term.screen.slice(term.screen.lastIndexOf("70% step 70"));
      // Before DONE is printed, the live line is erased (cursor up + erase line), then not drawn again.
      assert.ok(tail.includes("\x1b[1A\x1b[2KDONE 1 finished"), JSON.stringify(tail));
      assert.ok(!tail.slice(tail.indexOf("DONE 1")).includes("task 1 ["), "no live line after the final reply");
      await term.type("\x04");
      assert.equal((await term.status).code, 0);
    } finally {
      await term.close();
      await server.shutdown(5000);
    }
  },
);

Deno.test("client --window bounds what is in flight: a long input waits for results instead of flooding the queue", async () => {
  const server = await startServer({ workers: 1, concurrency: 100, queueSize: 5 });
  let peak = 0;
  const sampler = setInterval(() => {
    const s = server.stats();
    peak = Math.max(peak, s.queued + s.running);
  }, 2);
  try {
    const input = Array.from({ length: 30 }, () => "20").join("\n") + "\n";
    const r = await runCli(["client", "--port", String(server.addr.port), "--task", "sleep", "--window", "3", "-q"], {
      stdin: input,
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /30 accepted, 30 done, 0 failed, 0 refused/);
    assert.ok(peak <= 3, `at most 3 in flight, saw ${peak}`);
    assert.ok(peak >= 1);
  } finally {
    clearInterval(sampler);
    await server.shutdown(5000);
  }
});

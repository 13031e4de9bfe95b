/**
 * `asynctask client` as a real child process against a real server: exit codes, piped stdin,
 * `--json`, and the interactive mode driven through a pseudo-terminal (`script` from util-linux).
 */
import assert from "node:assert/strict";
import { FIXTURE_HANDLERS, ROOT, runCli, startServer } from "./helpers.ts";

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

Deno.test("client: exit 2 with a message naming the address when no server listens", async () => {
  const port = freePort();
  const r = await runCli(["client", "--port", String(port), "--send", "13800138000"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr.trim(),
    `asynctask client: cannot connect to 127.0.0.1:${port}: connection refused — is \`asynctask serve\` running? Start it with \`asynctask serve --port ${port}\``,
  );
  assert.equal(r.stdout, "");
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

Deno.test("interactive client through a terminal: prompt, ACCEPTED, DONE without breaking the typed line, Ctrl-D waits", async () => {
  const script = "/usr/bin/script";
  try {
    await Deno.stat(script);
  } catch {
    throw new Error(
      "this test needs `script` from util-linux (Debian package bsdutils/util-linux); .ci/run installs it",
    );
  }
  const server = await startServer({ smsDelayMs: 600 });
  const cmd = `${Deno.execPath()} run -A ${ROOT}main.ts client --port ${server.addr.port}`;
  const child = new Deno.Command(script, {
    args: ["-qfec", cmd, "/dev/null"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", TERM: "xterm" },
  }).spawn();
  let screen = "";
  const reader = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stdout) screen += dec.decode(chunk, { stream: true });
  })();
  const waitFor = async (re: RegExp, what: string) => {
    const deadline = Date.now() + 15_000;
    while (!re.test(screen)) {
      if (Date.now() > deadline) throw new Error(`no ${what} on the terminal:\n${JSON.stringify(screen)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const w = child.stdin.getWriter();
  const type = (s: string) => w.write(new TextEncoder().encode(s));
  try {
    await waitFor(/phone number> /, "prompt");
    await type("13800138000\r");
    await waitFor(/ACCEPTED 1 sending SMS to 13800138000/, "ACCEPTED");
    await type("1390"); // half a number typed when the DONE arrives
    await waitFor(/DONE 1 \{"phone":"13800138000"/, "DONE");
    const afterDone = screen.slice(screen.lastIndexOf("DONE 1"));
    assert.match(afterDone, /phone number> 1390/, "the typed text is redrawn after the reply");
    await type("0139000\r");
    await waitFor(/ACCEPTED 2 sending SMS to 13900139000/, "second ACCEPTED");
    await type("\x04"); // Ctrl-D with one result outstanding
    await waitFor(/waiting for 1 outstanding result/, "wait message");
    await waitFor(/2 accepted, 2 done, 0 failed, 0 refused/, "summary");
    assert.ok(screen.indexOf("DONE 2") > screen.indexOf("waiting for 1 outstanding"), "DONE 2 came after Ctrl-D");
    const status = await child.status;
    assert.equal(status.code, 0);
  } finally {
    await w.close().catch(() => {});
    try {
      child.kill();
    } catch {
      // exited
    }
    await child.status;
    await reader;
    await child.stderr.cancel();
    await server.shutdown(5000);
  }
});

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

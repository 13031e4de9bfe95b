/**
 * Log rotation with a real server process: `--log-file` is reopened at its path on SIGUSR1, so that
 * `mv` + `kill -USR1` rotates the log (and logrotate's `copytruncate`, which truncates the file in
 * place, leaves no hole: the file is opened for appending).
 */
import assert from "node:assert/strict";
import { eventually, LineClient, ROOT, spawnServe } from "./helpers.ts";

/** A `serve` process logging (text) to `file`. */
interface LoggingServer {
  port: number;
  child: Deno.ChildProcess;
  /** What the process wrote to its stderr so far. */
  stderr: () => string;
  /** Resolves when stderr is closed. */
  drained: Promise<void>;
}

/**
 * What Deno itself prints when `deno run` gets SIGUSR1: the address of the debugger it opens (and
 * the server closes again at once). The compiled binary prints nothing.
 */
const DEBUGGER_LINE = /^(Debugger listening on ws:\/\/\S+|Visit chrome:\/\/inspect to connect to the debugger\.)$/;

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
async function accepts(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

/** Starts `serve --log-file file` and reads its port from the listening line in the file. */
async function serveLoggingTo(file: string): Promise<LoggingServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, "serve", "--port", "0", "--log-file", file, "--stats-interval", "100ms"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let stderr = "";
  const drained = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) stderr += dec.decode(chunk, { stream: true });
  })();
  let port = 0;
  try {
    await eventually("the listening line in the log file", async () => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(await Deno.readTextFile(file).catch(() => ""));
      port = m ? Number(m[1]) : 0;
      return port > 0;
    }, 20_000);
  } catch (e) {
    child.kill("SIGKILL");
    await child.status;
    await drained;
    throw new Error(`${(e as Error).message}\nstderr: ${stderr}`);
  }
  return { port, child, stderr: () => stderr, drained };
}

/** Sends one echo task and waits for its result. */
async function echo(port: number, text: string): Promise<void> {
  const c = await LineClient.connect(port);
  try {
    await c.send(`/task echo ${text}`);
    assert.match(await c.next(), /^ACCEPTED \d+ /);
    assert.match(await c.next(), new RegExp(`^DONE \\d+ ${text}$`));
  } finally {
    await c.close();
  }
}

const read = (path: string) => Deno.readTextFile(path).catch(() => "");

/** Stops the server with SIGTERM; it must exit 0 having written nothing to stderr (but Deno's debugger lines). */
async function stop(server: LoggingServer): Promise<void> {
  server.child.kill("SIGTERM");
  const status = await server.child.status;
  await server.drained;
  assert.equal(status.code, 0, server.stderr());
  const own = server.stderr().split("\n").filter((l) => l !== "" && !DEBUGGER_LINE.test(l));
  assert.deepEqual(own, [], "with --log-file, nothing goes to stderr");
}

Deno.test("--log-file: mv, then SIGUSR1, and the next lines go to a new file at the path; copytruncate leaves no hole", async () => {
  const dir = await Deno.makeTempDir();
  const log = `${dir}/asynctask.log`;
  try {
    const server = await serveLoggingTo(log);
    try {
      await echo(server.port, "before");
      await eventually("the activity summary", async () => /1 accepted/.test(await read(log)));

      // Rotation by renaming: the server goes on writing to the renamed file until SIGUSR1.
      await Deno.rename(log, `${log}.1`);
      const debuggerPortInUse = await accepts(9229);
      // Deno's own SIGUSR1 handler (under `deno run`) starts 500 ms after the program: signal after it,
      // as an operator would.
      await new Promise((r) => setTimeout(r, 600));
      Deno.kill(server.child.pid, "SIGUSR1");
      await eventually("a new log file at the path", async () => /SIGUSR1: log file .* reopened/.test(await read(log)));
      if (!debuggerPortInUse) {
        // Deno (under `deno run`) opens its debugger on SIGUSR1 and says so on stderr: the server closes it again.
        // (Under a loaded parallel run another test's server may hold port 9229 first: then Deno opens nothing.)
        let opened = false;
        for (let i = 0; i < 50 && !opened; i++) {
          opened = /Debugger listening on/.test(server.stderr());
          if (!opened) await new Promise((r) => setTimeout(r, 100));
        }
        if (opened) await eventually("the debugger to be closed again", async () => !(await accepts(9229)));
      }
      await echo(server.port, "after");
      await eventually("the next activity summary, in the new file", async () => /1 accepted/.test(await read(log)));
      const old = await read(`${log}.1`);
      assert.match(old, /listening on 127\.0\.0\.1:/);
      assert.match(old.trimEnd().split("\n").at(-1)!, /SIGUSR1: reopening the log file .*asynctask\.log$/, old);
      assert.equal(old.match(/1 accepted/g)?.length, 1, "the renamed file got nothing after the reopen");

      // logrotate's copytruncate: the file is copied, then truncated in place; the server writes on
      // at the start of the emptied file (it appends), not at its old offset past a hole of zeros.
      await Deno.copyFile(log, `${log}.2`);
      await Deno.truncate(log, 0);
      await echo(server.port, "truncated");
      await eventually("a summary in the truncated file", async () => /1 accepted/.test(await read(log)));
      const truncated = await read(log);
      assert.ok(!truncated.includes("\0"), JSON.stringify(truncated.slice(0, 80)));
      assert.doesNotMatch(truncated, /reopened/, "only what came after the truncation");
    } finally {
      await stop(server);
    }
    assert.match(await read(log), /stopped: every accepted task finished and was answered/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGUSR1 when the log file's directory is gone: the error is logged, the server goes on in the old file", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/logs`);
  try {
    const server = await serveLoggingTo(`${dir}/logs/asynctask.log`);
    try {
      await Deno.rename(`${dir}/logs`, `${dir}/moved`);
      Deno.kill(server.child.pid, "SIGUSR1");
      const old = `${dir}/moved/asynctask.log`;
      await eventually("the error", async () => /cannot reopen log file .*asynctask\.log/.test(await read(old)));
      await echo(server.port, "still");
      await eventually("the activity summary in the old file", async () => /1 accepted/.test(await read(old)));
    } finally {
      await stop(server);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGUSR1 with logs on stderr: says there is no file to reopen, and serves on", async () => {
  const server = await spawnServe([]);
  try {
    Deno.kill(server.child.pid, "SIGUSR1");
    await eventually("the answer to SIGUSR1", () => /SIGUSR1: logs go to stderr/.test(server.log()));
    await echo(server.port, "served");
  } finally {
    server.child.kill("SIGTERM");
  }
  assert.equal((await server.exited()).code, 0);
});

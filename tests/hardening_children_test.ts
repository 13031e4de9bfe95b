/**
 * Hardening D: no command child outlives the server. A program that ignores SIGTERM, still in its
 * SIGTERM → SIGKILL window after its task's timeout, or still running its task, is killed with its
 * process group before the server process exits — on a graceful stop and on a second signal.
 * Real server processes (`main.ts serve`), real programs; /proc tells who is alive.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { spawnServe } from "./helpers.ts";

/** The live (not zombie) processes whose command line holds `marker`: pid → command line. */
function processesWith(marker: string): Map<number, string> {
  const found = new Map<number, string>();
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
      if (!cmdline.includes(marker)) continue;
      const status = Deno.readTextFileSync(`/proc/${pid}/status`);
      if (/^State:\s+Z/m.test(status)) continue; // ended; only its exit status waits to be collected
      const ppid = /^PPid:\s+(\d+)/m.exec(status)?.[1];
      found.set(pid, `${cmdline} (parent ${ppid})`);
    } catch {
      // gone while we looked
    }
  }
  return found;
}

/** Polls `ok` until it holds (true) or `timeoutMs` has passed (false). */
async function until(ok: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** A `serve` child process with a line connection to it. */
interface Serving {
  child: Deno.ChildProcess;
  log(): string;
  /** The next line from the server. */
  next(timeoutMs?: number): Promise<string>;
  send(line: string): Promise<void>;
  exited(): Promise<number>;
}

/** Starts `main.ts serve` on a free port with `args`, and connects to it. */
async function serve(args: string[]): Promise<Serving> {
  const server = await spawnServe(args);
  const { child, port, log } = server;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const lines: string[] = [];
  const reader = (async () => {
    let partial = "";
    for await (const text of conn.readable.pipeThrough(new TextDecoderStream())) {
      const parts = (partial + text).split("\n");
      partial = parts.pop()!;
      lines.push(...parts);
    }
  })().catch(() => {});
  const writer = conn.writable.getWriter();
  return {
    child,
    log,
    async next(timeoutMs = 15_000) {
      if (!(await until(() => lines.length > 0, timeoutMs))) {
        throw new Error(`no line from the server within ${timeoutMs} ms; its log:\n${log()}`);
      }
      return lines.shift()!;
    },
    send: (line) => writer.write(new TextEncoder().encode(line + "\n")),
    async exited() {
      const { code } = await server.exited();
      await writer.close().catch(() => {});
      await reader;
      return code;
    },
  };
}

/** A config file with one command task that ignores SIGTERM; `marker` names its processes. */
async function stubbornConfig(marker: string, timeout: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "asynctask-hardening-" });
  const file = join(dir, "asynctask.json");
  // $0 is the marker, so the shell's command line carries it; so does sleep's (a unique duration).
  const sleep = `30.${marker.slice(-6).replace(/\D/g, "1")}`;
  const tasks = {
    stubborn: { kind: "command", command: ["sh", "-c", `trap '' TERM; sleep ${sleep}`, marker], timeout },
  };
  await Deno.writeTextFile(file, JSON.stringify({ tasks }));
  return file;
}

function killLeftovers(marker: string): void {
  for (const pid of processesWith(marker).keys()) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** Kills what a test left running: the marked programs, then the server. */
async function cleanUp(server: Serving, marker: string): Promise<void> {
  killLeftovers(marker);
  try {
    server.child.kill("SIGKILL");
  } catch {
    // exited
  }
  await server.exited();
}

Deno.test("SIGTERM to the server while a timed-out command ignores SIGTERM: the server exits 0 and the program is dead", async () => {
  const marker = `hardening-stubborn-${crypto.randomUUID().slice(0, 8)}`;
  const config = await stubbornConfig(marker, "300ms");
  const server = await serve(["--config", config, "--task", "stubborn", "--workers", "1", "--retries", "0"]);
  try {
    await server.send("/task stubborn x");
    assert.match(await server.next(), /^ACCEPTED 1 /);
    assert.ok(await until(() => processesWith(marker).size > 0, 10_000), "the program started");
    assert.match(await server.next(), /^FAILED 1 timeout /);
    // The program got SIGTERM (ignored) and has 2 s before SIGKILL: stop the server inside that window.
    assert.ok(processesWith(marker).size > 0, "the program outlived its SIGTERM");
    server.child.kill("SIGTERM");
    const code = await server.exited();
    assert.equal(code, 0, server.log());
    const gone = await until(() => processesWith(marker).size === 0, 1000);
    assert.ok(gone, `still alive after the server exited: ${JSON.stringify([...processesWith(marker)])}`);
  } finally {
    await cleanUp(server, marker);
  }
});

Deno.test("a second SIGTERM stops the server at once: the command it was running dies with it", async () => {
  const marker = `hardening-running-${crypto.randomUUID().slice(0, 8)}`;
  const config = await stubbornConfig(marker, "1m");
  const server = await serve(["--config", config, "--task", "stubborn", "--workers", "1", "--shutdown-timeout", "1m"]);
  try {
    await server.send("/task stubborn x");
    assert.match(await server.next(), /^ACCEPTED 1 /);
    assert.ok(await until(() => processesWith(marker).size > 0, 10_000), "the program started");
    server.child.kill("SIGTERM"); // graceful: waits for the task, up to a minute
    assert.ok(await until(() => /SIGTERM: stopping/.test(server.log()), 15_000), "the first SIGTERM handled");
    // Not the same signal delivered twice: the server takes a second one within 500 ms of handling the first as the same.
    await new Promise((r) => setTimeout(r, 800));
    server.child.kill("SIGTERM"); // stop now
    const code = await server.exited();
    assert.equal(code, 130, server.log());
    const gone = await until(() => processesWith(marker).size === 0, 1000);
    assert.ok(gone, `still alive after the server exited: ${JSON.stringify([...processesWith(marker)])}`);
  } finally {
    await cleanUp(server, marker);
  }
});

for (const how of ["throw", "exit"] as const) {
  Deno.test(`the main thread dies (${how === "throw" ? "an uncaught error" : "Deno.exit"}): the command it was running dies with it`, async () => {
    const id = `hardening-fatal-${crypto.randomUUID().slice(0, 8)}`;
    const marker = `cmd-${id}`; // the program's; this process's own command line has only the id
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./fixtures/hardening_fatal_main.ts", import.meta.url).pathname, id, how],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    try {
      assert.ok(await until(() => processesWith(marker).size > 0, 15_000), "the program started");
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode("die\n"));
      await w.close();
      const { code, stderr } = await child.output();
      assert.equal(code, how === "throw" ? 1 : 3, new TextDecoder().decode(stderr));
      const gone = await until(() => processesWith(marker).size === 0, 1000);
      assert.ok(gone, `still alive after the process exited: ${JSON.stringify([...processesWith(marker)])}`);
    } finally {
      killLeftovers(marker);
      try {
        child.kill("SIGKILL");
      } catch {
        // exited
      }
    }
  });
}

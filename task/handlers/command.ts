/**
 * `command` tasks: run a program per task, declared by the operator in the config file. The
 * client's data never becomes part of the command line: the program gets it as JSON on stdin.
 *
 * The contract with the program:
 * - argv from the config, run without a shell, in its own process group;
 * - stdin: the task's data as JSON, then end of file;
 * - environment: the server's, without `ASYNCTASK_TOKEN` and the webhooks' `secret-env`s, plus the config's `env` and
 *   `ASYNCTASK_TASK_ID`, `ASYNCTASK_TASK`, `ASYNCTASK_ATTEMPT`;
 * - stdout (up to `max-output` bytes) is the result: JSON when it parses, else text;
 * - exit 0 is success; exit 75 (`EX_TEMPFAIL`) asks for a retry; any other exit is a permanent
 *   failure carrying the tail of stderr; death by a signal is a failure that may be retried;
 * - a stderr line `progress: 40 message` becomes a `PROGRESS` reply;
 * - on timeout the whole process group gets SIGTERM, then SIGKILL {@linkcode KILL_GRACE_MS}
 *   later; on a forced stop of the server, SIGKILL at once; whatever the program left running in
 *   its group when it exits is killed too;
 * - no program outlives the server: in a pool worker each group is recorded (see
 *   {@linkcode trackChildGroups}) until it is dead, and the main isolate SIGKILLs what is recorded
 *   when the worker ends, however it ends, and when the process exits.
 *
 * @module
 */
import { PermanentError, type TaskContext, type TaskHandler } from "../types.ts";
import type { TaskSpec } from "../spec.ts";

/** The `command` kind of {@linkcode TaskSpec}. */
export type CommandSpec = Extract<TaskSpec, { kind: "command" }>;

/** Exit code with which a command asks to be run again later (`EX_TEMPFAIL` from sysexits.h). */
export const EXIT_TEMPFAIL = 75;
/** How long a process group has between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 2000;
/** How much of stderr a failure message carries (its end). */
export const STDERR_TAIL = 2000;

const PROGRESS_LINE = /^progress:\s*(\d+(?:\.\d+)?)%?(?:\s+(.*))?$/i;

/**
 * Reads a stderr line as a progress report, if it is one: `progress: 40 message` (a `%` after
 * the number is allowed).
 *
 * @example
 * ```ts
 * import { parseProgressLine } from "./command.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseProgressLine("progress: 40 dialing the gateway"), { percent: 40, message: "dialing the gateway" });
 * assert.equal(parseProgressLine("warning: slow"), undefined);
 * ```
 */
export function parseProgressLine(line: string): { percent: number; message?: string } | undefined {
  const m = PROGRESS_LINE.exec(line.trim());
  if (!m) return undefined;
  return m[2] ? { percent: Number(m[1]), message: m[2] } : { percent: Number(m[1]) };
}

/**
 * The program's environment: the server's own, minus its token and the `hidden` secrets, plus the
 * config's and the task's.
 *
 * @example
 * ```ts
 * import { commandEnv } from "./command.ts";
 * import assert from "node:assert/strict";
 * const env = commandEnv({ PATH: "/bin", ASYNCTASK_TOKEN: "s3cret", MAILER_KEY: "k" }, { GATEWAY: "x" }, 7, "sms", 2, ["MAILER_KEY"]);
 * assert.equal(env.ASYNCTASK_TOKEN, undefined);
 * assert.equal(env.MAILER_KEY, undefined);
 * assert.equal(env.ASYNCTASK_TASK_ID, "7");
 * assert.equal(env.GATEWAY, "x");
 * ```
 */
export function commandEnv(
  base: Record<string, string>,
  extra: Record<string, string> | undefined,
  taskId: number,
  task: string,
  attempt: number,
  hidden: readonly string[] = [],
): Record<string, string> {
  const env: Record<string, string> = { ...base };
  delete env.ASYNCTASK_TOKEN;
  for (const name of hidden) delete env[name];
  Object.assign(env, extra);
  env.ASYNCTASK_TASK_ID = String(taskId);
  env.ASYNCTASK_TASK = task;
  env.ASYNCTASK_ATTEMPT = String(attempt);
  return env;
}

/**
 * Reads a stream to its end, keeping at most `max` bytes (the rest is read and dropped, so the
 * writer never blocks on a full pipe).
 */
async function readCapped(stream: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let kept = 0;
  for await (const chunk of stream) {
    if (kept >= max) continue;
    const part = chunk.length > max - kept ? chunk.subarray(0, max - kept) : chunk;
    chunks.push(part);
    kept += part.length;
  }
  const out = new Uint8Array(kept);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Reads stderr line by line: progress lines go to `ctx.progress`, the others into a bounded tail. */
async function readStderr(stream: ReadableStream<Uint8Array>, ctx: TaskContext): Promise<string> {
  let tail = "";
  let partial = "";
  const take = (line: string) => {
    const p = parseProgressLine(line);
    if (p) ctx.progress(p.percent, p.message);
    else tail = (tail + line + "\n").slice(-STDERR_TAIL);
  };
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    if (partial.length > STDERR_TAIL) partial = partial.slice(-STDERR_TAIL);
    for (const line of lines) take(line);
  }
  if (partial) take(partial);
  return tail.trim();
}

/** Where a worker records the process groups of the programs it runs. */
export interface ChildGroupTracker {
  add(pgid: number): void;
  remove(pgid: number): void;
}

let tracker: ChildGroupTracker | undefined;

/**
 * Makes every command handler of this isolate record its program's process group from its start
 * until nothing of the group is left. A pool worker records them where the main isolate can read
 * them when the worker can no longer run code (terminated, or the process exiting).
 *
 * @example
 * ```ts
 * import { trackChildGroups } from "./command.ts";
 * const alive = new Set<number>();
 * trackChildGroups({ add: (g) => alive.add(g), remove: (g) => alive.delete(g) });
 * trackChildGroups(undefined);
 * ```
 */
export function trackChildGroups(t: ChildGroupTracker | undefined): void {
  tracker = t;
}

/** Sends `signal` to the process group led by `pid`; a group already gone is fine. */
function killGroup(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pid, signal);
  } catch {
    // ESRCH: nothing left in the group
  }
}

/**
 * A command's stdout as a result: JSON when the whole of it parses, else the text (one trailing
 * line break removed); nothing is `null`.
 *
 * @example
 * ```ts
 * import { commandResult } from "./command.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(commandResult('{"id": 3}\n'), { id: 3 });
 * assert.equal(commandResult("sent\n"), "sent");
 * ```
 */
export function commandResult(stdout: string): unknown {
  const text = stdout.replace(/\r?\n$/, "");
  if (text.trim() === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Creates the handler of a `command` task.
 *
 * @example
 * ```ts
 * import { createCommandHandler } from "./command.ts";
 * import { testContext } from "../testing.ts";
 * import assert from "node:assert/strict";
 * const upper = createCommandHandler({ kind: "command", name: "upper", command: ["tr", "a-z", "A-Z"], maxOutput: 1024 });
 * assert.equal(await upper.run("hi", testContext()), "HI");
 * ```
 */
export function createCommandHandler(spec: CommandSpec): TaskHandler {
  const [program, ...args] = spec.command;
  const shown = program.slice(program.lastIndexOf("/") + 1); // messages name the script, not its path
  return {
    name: spec.name,
    description: spec.description ?? `runs ${spec.command.join(" ")}`,
    validate: (data) => data,
    timeoutMs: spec.timeoutMs,
    retries: spec.retries,
    concurrency: spec.concurrency,
    async run(data, ctx) {
      ctx.signal.throwIfAborted();
      let child: Deno.ChildProcess;
      try {
        child = new Deno.Command(program, {
          args,
          cwd: spec.cwd,
          clearEnv: true,
          env: commandEnv(Deno.env.toObject(), spec.env, ctx.taskId, ctx.task, ctx.attempt, spec.hideEnv),
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
          // A new session: the program and everything it starts form one process group, which a
          // timeout kills as a whole.
          detached: true,
        }).spawn();
      } catch (e) {
        throw new PermanentError(
          `cannot run ${program}: ${(e as Error).message} — check the task's "command" (and "cwd") in the config`,
        );
      }
      // Recorded before anything can wait: from here on, whatever ends this isolate still kills it.
      const groups = tracker;
      groups?.add(child.pid);
      let killTimer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => {
        // A timeout gives the program KILL_GRACE_MS to clean up; a forced stop of the server
        // (--shutdown-timeout ran out, AbortError) cannot wait: its worker is about to end.
        if ((ctx.signal.reason as { name?: string } | undefined)?.name === "AbortError") {
          killGroup(child.pid, "SIGKILL");
          return;
        }
        killGroup(child.pid, "SIGTERM");
        killTimer = setTimeout(() => killGroup(child.pid, "SIGKILL"), KILL_GRACE_MS);
      };
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      const stdout = readCapped(child.stdout, spec.maxOutput);
      const stderr = readStderr(child.stderr, ctx);
      const writer = child.stdin.getWriter();
      writer.write(new TextEncoder().encode(JSON.stringify(data) + "\n")).then(() => writer.close()).catch(() => {
        // The program exited or closed stdin without reading it all: its business.
      });
      const status = await child.status;
      ctx.signal.removeEventListener("abort", onAbort);
      // What the program left running in its group would hold the pipes open: end it.
      killGroup(child.pid, "SIGKILL");
      groups?.remove(child.pid);
      clearTimeout(killTimer);
      const [out, err] = await Promise.all([stdout, stderr]);
      ctx.signal.throwIfAborted();
      if (status.success) return commandResult(new TextDecoder().decode(out));
      const tail = err ? `: ${err}` : " (nothing on stderr)";
      if (status.signal) throw new Error(`${shown} was killed by ${status.signal}${tail}`);
      if (status.code === EXIT_TEMPFAIL) throw new Error(`${shown} asked for a retry (exit code 75)${tail}`);
      throw new PermanentError(`${shown} failed with exit code ${status.code}${tail}`);
    },
  };
}

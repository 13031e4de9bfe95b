/**
 * What the peer rows of the benchmark suite share: a free loopback port, a process's CPU time from
 * `/proc`, a child process started until it prints a line, and the shape of a peer's result.
 *
 * @module
 */

/** The load of one peer row: `conns` submitters, each sending `tasks` with `window` in flight. */
export interface PeerLoad {
  conns: number;
  tasks: number;
  window: number;
}

/** One peer row that ran. */
export interface PeerResult {
  peer: string;
  load: PeerLoad;
  done: number;
  failed: number;
  /** Sent and never answered. */
  lost: number;
  elapsedMs: number;
  tasksPerSec: number;
  /** CPU time (utime + stime) during the load, µs, by process. */
  cpuUs: Record<string, number>;
  /** The sum of `cpuUs`, per finished task. */
  cpuUsPerTask: number;
  /** Latency from submit to result, ms. */
  p50Ms: number;
  p99Ms: number;
  /** Peer-specific figures (e.g. Redis commands per task). */
  extra: Record<string, number>;
  /** The first failure's message, where tasks failed. */
  firstError?: string;
}

/** One peer row that could not run, and why. */
export interface PeerSkipped {
  peer: string;
  load: PeerLoad;
  skipped: string;
}

export type PeerOutcome = PeerResult | PeerSkipped;

/** A port free on 127.0.0.1 now (taken from the kernel, then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux). */
const TICKS_PER_S = 100;

/** A process's CPU time so far (utime + stime, all its threads), µs; 0 where `/proc` cannot tell. */
export function cpuUs(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The fields after the command name (which may hold spaces) start at field 3 (state).
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Math.round(((Number(f[11]) + Number(f[12])) / TICKS_PER_S) * 1e6); // utime, stime: fields 14, 15
  } catch {
    return 0;
  }
}

/** The path of an executable on `PATH` (or given absolute), or `undefined`. */
export function which(name: string): string | undefined {
  const dirs = name.includes("/") ? [""] : (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":");
  for (const dir of dirs) {
    const path = dir ? `${dir}/${name}` : name;
    try {
      const info = Deno.statSync(path);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111)) return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A started child process. */
export interface Child {
  pid: number;
  /** What it printed (stdout and stderr, the first 100 kB). */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `argv` and waits (up to `timeoutMs`) until its output matches `ready`. On a timeout or an
 * early exit it kills the child and throws with its output.
 */
export async function startChild(
  argv: string[],
  ready: RegExp,
  o: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Child> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: o.cwd,
    env: o.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const isReady = Promise.withResolvers<void>();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      if (output.length < 100_000) output += text;
      if (ready.test(output)) isReady.resolve();
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    isReady.reject(new Error(`${argv[0]} exited (code ${s.code}) before it was ready:\n${output.trim()}`));
    return s;
  });
  const timer = setTimeout(
    () => isReady.reject(new Error(`${argv[0]} was not ready within ${o.timeoutMs ?? 30_000} ms:\n${output.trim()}`)),
    o.timeoutMs ?? 30_000,
  );
  const stop = async (graceMs = 5000) => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // gone already
      }
      const kill = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // gone already
        }
      }, graceMs);
      await status;
      clearTimeout(kill);
    }
    await drained;
  };
  try {
    await isReady.promise;
  } catch (e) {
    await stop(0);
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return { pid: child.pid, output: () => output, stop };
}

/** Waits until something accepts TCP connections on 127.0.0.1:`port` (up to `timeoutMs`). */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A short reason from an error, for a skipped row. */
export function reason(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const first = text.split("\n").map((l) => l.trim()).filter(Boolean).slice(0, 2).join(": ");
  return first.length > 160 ? `${first.slice(0, 157)}...` : first;
}

/** "50×2000, window 20". */
export const loadText = (l: PeerLoad) => `${l.conns}×${l.tasks}, window ${l.window}`;

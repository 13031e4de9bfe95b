/**
 * A server process for benchmarks: started, its port read from its "listening on" line, its
 * memory read from `/proc`, stopped with SIGTERM.
 *
 * @module
 */

/** A started server process. */
export interface ServerProcess {
  port: number;
  pid: number;
  /** Resident memory now, in KiB (0 where `/proc` is not available). */
  rssKiB(): number;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number>;
}

const ROOT = new URL("../", import.meta.url).pathname;

/**
 * The command line that runs `asynctask <args>`: this executable itself when it is the compiled
 * binary, else `deno run -A main.ts`.
 */
export function asynctaskCommand(args: string[]): string[] {
  const exe = Deno.execPath();
  return /(^|\/)deno(\.exe)?$/.test(exe) ? [exe, "run", "-A", `${ROOT}main.ts`, ...args] : [exe, ...args];
}

/** The command line of the bare line responder (`bench/bare.ts`). */
export function bareCommand(): string[] {
  return [Deno.execPath(), "run", "-A", `${ROOT}bench/bare.ts`, "--port", "0"];
}

/**
 * Starts `argv` and waits (up to 30 s) for it to print `listening on <host>:<port>`.
 *
 * @example
 * ```ts ignore
 * const server = await startServerProcess(asynctaskCommand(["serve", "--port", "0"]));
 * console.log(server.port, server.rssKiB());
 * await server.stop();
 * ```
 */
export async function startServerProcess(argv: string[]): Promise<ServerProcess> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let output = "";
  const listening = Promise.withResolvers<number>();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      if (output.length < 100_000) output += text;
      const port = /listening on [\d.]+:(\d+)/.exec(output)?.[1];
      if (port) listening.resolve(Number(port));
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]).then(() =>
    listening.reject(new Error(`the server exited before it listened:\n${output}`))
  );
  const timer = setTimeout(
    () => listening.reject(new Error(`the server did not listen within 30 s:\n${output}`)),
    30_000,
  );
  let port: number;
  try {
    port = await listening.promise;
  } catch (e) {
    child.kill("SIGKILL");
    await child.status;
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return {
    port,
    pid: child.pid,
    rssKiB() {
      try {
        const status = Deno.readTextFileSync(`/proc/${child.pid}/status`);
        return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      } catch {
        return 0;
      }
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // gone already
      }
      const status = await child.status;
      await drained;
      return status.code;
    },
  };
}

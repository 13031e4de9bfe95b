#!/usr/bin/env -S deno run -A
/**
 * `asynctask`: the command line. `serve` runs the task server, `client` talks to it.
 *
 * The walk of the code: this file → `server/cli.ts` → `server/server.ts` → `server/desk.ts` →
 * `server/lifecycle.ts` → `task/pool.ts` → `task/worker.ts` → `task/handlers/*.ts`, and back; the
 * client is `client/cli.ts`, and the operator's commands (`status`, `tasks`, `retry`, `cancel`)
 * are `client/admin.ts`.
 *
 * @module
 */
import { type FlagSpec, HELP_FLAG, suggest, UsageError } from "./cli/flags.ts";
import { type CompletedProgram, runCompletions, SHELLS } from "./cli/completions.ts";
import { commandFor, programName } from "./cli/invocation.ts";
import { VERSION, versionLine, wantsVersion } from "./cli/version.ts";
import { StartError } from "./server/errors.ts";

export { VERSION };

// Each command loads its own modules when it runs: a process runs one command, and the others'
// modules (the client's, the benchmark's, the server's) only cost it memory — a few MiB of heap and
// compiled code in a server that stays up for months.
const COMMANDS: Record<string, { run: (args: string[]) => Promise<number>; help: string }> = {
  serve: {
    run: async (args) => (await import("./server/cli.ts")).runServe(args),
    help: "run the task server (like Swoole's example Server.php)",
  },
  client: {
    run: async (args) => (await import("./client/cli.ts")).runClient(args),
    help: "send tasks and print their results (like Swoole's example Client.php)",
  },
  status: {
    run: async (args) => (await import("./client/admin.ts")).runStatus(args),
    help: "a running server's counters: tasks, queue, workers (its /stats)",
  },
  tasks: {
    run: async (args) => (await import("./client/admin.ts")).runTasks(args),
    help: "list a server's failed, running, queued or scheduled tasks",
  },
  retry: {
    run: async (args) => (await import("./client/admin.ts")).runRetry(args),
    help: "run failed tasks again under new ids, and wait for their results",
  },
  cancel: {
    run: async (args) => (await import("./client/admin.ts")).runCancel(args),
    help: "stop queued or running tasks",
  },
  pause: {
    run: async (args) => (await import("./client/admin.ts")).runPauseResume("pause", args),
    help: "stop starting tasks of a name (or all): they wait",
  },
  resume: {
    run: async (args) => (await import("./client/admin.ts")).runPauseResume("resume", args),
    help: "start paused tasks again",
  },
  bench: {
    run: async (args) => (await import("./bench/cli.ts")).runBench(args),
    help: "load-test a server: tasks/s, latency percentiles, lost tasks",
  },
  completions: {
    run: async (args) => runCompletions(args, await completedProgram()),
    help: `print a shell completion script: ${SHELLS.join(", ")}`,
  },
};

/** The commands and their flag tables, for `completions`. */
async function completedProgram(): Promise<CompletedProgram> {
  const [{ flagSpecs }, { SERVE_OPTIONS }, { CLIENT_FLAGS }, admin, { BENCH_FLAGS }] = await Promise.all([
    import("./cli/options.ts"),
    import("./server/options.ts"),
    import("./client/cli.ts"),
    import("./client/admin.ts"),
    import("./bench/cli.ts"),
  ]);
  const tables: [string, readonly FlagSpec[]][] = [
    ["serve", flagSpecs(SERVE_OPTIONS)],
    ["client", CLIENT_FLAGS],
    ["status", admin.STATUS_FLAGS],
    ["tasks", admin.TASKS_FLAGS],
    ["retry", admin.RETRY_FLAGS],
    ["cancel", admin.CANCEL_FLAGS],
    ["pause", admin.PAUSE_FLAGS],
    ["resume", admin.PAUSE_FLAGS],
    ["bench", BENCH_FLAGS],
    ["completions", [HELP_FLAG]],
  ];
  return {
    name: programName(),
    flags: [HELP_FLAG, { name: "version", kind: "boolean", short: "V", help: "print the version" }],
    commands: tables.map(([name, flags]) => ({
      name,
      help: COMMANDS[name].help,
      flags,
      ...(name === "completions" ? { words: SHELLS } : {}),
      // asynctask bench --spawn -- <serve flags>
      ...(name === "bench" ? { dashDashFlagsOf: "serve" } : {}),
    })),
  };
}

const WIDTH = Math.max(...Object.keys(COMMANDS).map((name) => name.length)) + 2;

const HELP = `asynctask ${VERSION} — a task server in one executable

Usage:
  asynctask <command> [flags]

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(WIDTH)}${c.help}`).join("\n")}

Flags:
  -h, --help     show this help (or a command's: asynctask serve --help)
  -V, --version  print the version

Quick start:
  asynctask serve                 # terminal 1: listen on 127.0.0.1:9501
  asynctask client                # terminal 2: type a phone number, get ACCEPTED, then DONE
  asynctask tasks --failed        # what failed, with its error and data; then: asynctask retry <id>
`;

/**
 * Runs the CLI with `args`; returns the exit code: 0 ok, 1 a task failed or the server stopped
 * with work unfinished, 2 a usage error or the server could not be reached or started.
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    console.log(HELP);
    return command === undefined ? 2 : 0;
  }
  const entry = COMMANDS[command];
  // `asynctask --version`, and `asynctask serve --version` too: the same line whatever the command.
  if (command === "-V" || command === "--version" || command === "version" || (entry && wantsVersion(rest))) {
    console.log(versionLine());
    return 0;
  }
  try {
    if (!entry) {
      const hint = suggest(command, Object.keys(COMMANDS));
      throw new UsageError(
        `unknown command "${command}"` + (hint ? ` — did you mean "${hint}"?` : "") +
          ` Commands are ${Object.keys(COMMANDS).join(", ")}; run \`${programName()} --help\``,
      );
    }
    return await entry.run(rest);
  } catch (e) {
    if (e instanceof UsageError || e instanceof StartError) {
      // In the words the user typed: `asynctask serve: …` from the binary, `./deno task serve: …` from source.
      console.error(`${entry ? commandFor(command) : programName()}: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));

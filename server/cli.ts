/**
 * `asynctask serve`: reads its options (declared in `options.ts`), and runs the process around a
 * {@linkcode TaskServer} — logging, signals, graceful stop and exit codes. With `main.ts`, the only
 * code that exits the process.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { readFlagFile, renderHelp, UsageError } from "../cli/flags.ts";
import { closeLogging, flushLogging, reopenLogFile, setupLogging } from "../cli/log.ts";
import { flagSpecs, parseOptions } from "../cli/options.ts";
import { formatDuration, formatSize } from "../cli/units.ts";
import { SERVE_OPTIONS, type ServeOptions, type ServeOptionValues } from "./options.ts";
import { TaskServer } from "./server.ts";
import { hideFromSameUser } from "./hide.ts";
import { parseBrokerUrl } from "./store/redis_url.ts";

/**
 * A stop signal that comes again sooner than this after the first is the same one delivered twice
 * (a terminal's Ctrl-C reaches both `deno task` and the server, and `deno task` forwards it), not
 * a person asking to stop at once.
 */
export const SAME_SIGNAL_MS = 500;

/** The `--help` text of `asynctask serve`. */
export const SERVE_HELP = renderHelp(
  "asynctask serve [flags]",
  "Runs the task server: answers every request at once, runs tasks in a pool of worker threads,\n" +
    "and sends each result back to the client that asked. Stop it with Ctrl-C (SIGINT) or SIGTERM:\n" +
    "it finishes queued and running tasks first; a second signal stops it at once. SIGHUP replaces\n" +
    "the workers one at a time (handler modules loaded anew) without losing or refusing a task.\n" +
    "SIGUSR1 reopens --log-file at its path, for log rotation (mv, then kill -USR1).",
  flagSpecs(SERVE_OPTIONS),
);

/**
 * Reads `asynctask serve`'s arguments (and environment, and `--config` file) into the options a
 * server runs with, and the process's own (logging, the stop timeout).
 *
 * @example
 * ```ts
 * import { serveOptions } from "./cli.ts";
 * import assert from "node:assert/strict";
 * const { options } = await serveOptions(["--port", "7000", "--idle-timeout", "2m"]);
 * assert.equal(options.port, 7000);
 * assert.equal(options.idleTimeoutMs, 120_000);
 * ```
 * @throws {UsageError} naming the flag or config key and the fix.
 */
export async function serveOptions(args: string[]): Promise<{
  options: ServeOptions;
  process: Pick<ServeOptionValues, "help" | "logLevel" | "logFormat" | "logFile" | "shutdownTimeoutMs"> & {
    /** Whether the token came from ASYNCTASK_TOKEN. */
    tokenFromEnv: boolean;
  };
}> {
  const { values: v, defaulted, config } = parseOptions("serve", SERVE_OPTIONS, args, {
    configSections: ["tasks", "schedules"],
  });
  const { help, logLevel, logFormat, logFile, config: _config, tlsCert, tlsKey, tokenFile, ...rest } = v;
  const options: ServeOptions = {
    ...rest,
    modules: rest.modules.map((p) => p.startsWith("file:") ? p : pathToFileURL(resolve(p)).href),
  };
  if (config.sections.tasks !== undefined) {
    // Loaded only for a config with tasks: it brings the JSON Schema compiler (Ajv) along.
    const { parseTasks, TaskConfigError } = await import("../task/config.ts");
    try {
      options.tasks = parseTasks(config.sections.tasks, config.path!);
      // The built-in default, sms, exists only if the map declares it: otherwise text lines must
      // name their task (an explicit --task must name a declared one).
      if (defaulted.has("defaultTask") && !options.tasks.some((t) => t.name === options.defaultTask)) {
        delete options.defaultTask;
      }
    } catch (e) {
      if (e instanceof TaskConfigError) throw new UsageError(e.message);
      throw e;
    }
  }
  const tokenFromEnv = tokenFile === undefined && !args.some((a) => a === "--token" || a.startsWith("--token=")) &&
    (Deno.env.get("ASYNCTASK_TOKEN") ?? "") !== "";
  // Secrets leave the process's environment once read, so that nothing started later inherits
  // them. (The copy the kernel keeps for /proc/<pid>/environ stays: runServe hides it, hide.ts.)
  Deno.env.delete("ASYNCTASK_TOKEN");
  const brokerPassword = Deno.env.get("ASYNCTASK_BROKER_PASSWORD");
  Deno.env.delete("ASYNCTASK_BROKER_PASSWORD");
  if (options.broker !== undefined) {
    const parsed = parseBrokerUrl(options.broker, brokerPassword);
    if (!parsed.ok) throw new UsageError(parsed.message);
    if (options.journal !== undefined) {
      throw new UsageError(
        "--broker and --journal cannot be used together: with --broker, Redis keeps the tasks; choose one",
      );
    }
    if (brokerPassword) options.brokerPassword = brokerPassword;
  }
  for (const t of options.tasks ?? []) {
    if (t.kind === "command") {
      for (const v of t.hideEnv ?? []) Deno.env.delete(v);
    }
  }
  if (config.sections.schedules !== undefined) {
    const { parseSchedules } = await import("../task/schedule.ts");
    // Task names are checked here against a tasks map; without one, at start against every handler.
    const names = options.tasks?.map((t) => t.name);
    const parsed = parseSchedules(config.sections.schedules, names ? { tasks: names } : {});
    if (!parsed.ok) throw new UsageError(`config file ${config.path}: ${parsed.message}`);
    options.schedules = parsed.value;
  }
  if (tokenFile !== undefined) {
    const token = readFlagFile(tokenFile, "--token-file", 64 * 1024).split(/\r?\n/)[0].trim();
    if (token === "") throw new UsageError(`--token-file ${tokenFile}: its first line is empty; put the token there`);
    options.token = token;
  }
  if (options.maxResultBytes > options.maxOutput) {
    if (!defaulted.has("maxResultBytes")) {
      throw new UsageError(
        `--max-result ${formatSize(options.maxResultBytes)} is more than --max-output ${
          formatSize(options.maxOutput)
        }: a result that size could never be written to its client; raise --max-output or lower --max-result`,
      );
    }
    options.maxResultBytes = options.maxOutput; // the default gives way to a smaller --max-output
  }
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together: give both, or neither for plain TCP");
  }
  if (tlsCert !== undefined && tlsKey !== undefined) {
    options.tls = { cert: readFlagFile(tlsCert, "--tls-cert"), key: readFlagFile(tlsKey, "--tls-key") };
  }
  return {
    options,
    process: {
      help,
      logLevel,
      logFormat,
      logFile,
      shutdownTimeoutMs: v.shutdownTimeoutMs,
      tokenFromEnv,
    },
  };
}

/** Whether this process is `deno run main.ts` (from a checkout), not the compiled binary. */
function underDenoRun(): boolean {
  try {
    return /^deno(\.exe)?$/i.test(Deno.execPath().replace(/^.*[\\/]/, ""));
  } catch {
    return false; // no --allow-read: the path is hidden; say nothing
  }
}

/**
 * Runs `asynctask serve` until it is stopped; returns the process exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runServe(["--port", "9501", "--workers", "4"]));
 * ```
 */
export async function runServe(args: string[]): Promise<number> {
  const { options, process: p } = await serveOptions(args);
  if (p.help) {
    console.log(SERVE_HELP);
    return 0;
  }
  const shutdownTimeout = p.shutdownTimeoutMs;
  await setupLogging({ level: p.logLevel, format: p.logFormat, file: p.logFile });
  const log = getLogger(["asynctask", "server"]);
  const secrets = options.token !== undefined ||
    (options.tasks ?? []).some((t) => t.kind === "webhook" && t.secret !== undefined);
  if (secrets) {
    // The environment the process started with stays in /proc/<pid>/environ, token and all.
    const why = hideFromSameUser();
    if (why === undefined) {
      log.debug(
        "secrets held: this process is not dumpable, so its environment is hidden from other processes of its user",
      );
    } else if (p.tokenFromEnv) {
      log.warn(
        "ASYNCTASK_TOKEN stays readable in /proc/{pid}/environ by every process of this user, command tasks included: {why}. Use --token-file, or run the server as a user of its own",
        { pid: Deno.pid, why },
      );
    }
  }
  const server = await TaskServer.start(options, {
    storeFailed: (why) => {
      log.fatal(why);
      flushLogging();
      Deno.exit(1);
    },
  });

  const stopped = Promise.withResolvers<number>();
  let firstSignalAt: number | undefined;
  const onSignal = (name: Deno.Signal) => async () => {
    if (firstSignalAt !== undefined) {
      const after = performance.now() - firstSignalAt;
      if (after < SAME_SIGNAL_MS) {
        // One Ctrl-C on `deno task serve` arrives twice: from the terminal (which signals the
        // whole foreground process group) and forwarded by `deno task`; a service manager that
        // signals the whole group does the same. That is one request to stop, not two.
        log.debug("{signal} again {ms} ms after the first: taken as the same one, delivered twice", {
          signal: name,
          ms: Math.round(after),
        });
        return;
      }
      log.error("second {signal}: stopping now; {tasks} unfinished task(s) get no final reply", {
        signal: name,
        tasks: server.unfinished,
      });
      flushLogging();
      Deno.exit(130);
    }
    firstSignalAt = performance.now();
    log.info(
      "{signal}: stopping — no new tasks; finishing {tasks} queued and running (up to {timeout}); send {signal} again to stop now",
      {
        signal: name,
        tasks: server.stopWaitsFor,
        timeout: formatDuration(shutdownTimeout),
      },
    );
    const report = await server.shutdown(shutdownTimeout);
    if (report.delayedFailed > 0) {
      log.warn(
        "{tasks} delayed task(s) not due yet failed with shutting_down: without --journal nothing keeps them across a restart",
        { tasks: report.delayedFailed },
      );
    }
    if (report.delayedKept > 0) {
      log.info(
        "{tasks} delayed task(s) not due yet kept by the store: they run when due after the next start (with the broker, on any server)",
        {
          tasks: report.delayedKept,
        },
      );
    }
    if (report.unfinished > 0) {
      log.error(
        "stopped with {tasks} task(s) unfinished after --shutdown-timeout; they were failed with shutting_down",
        {
          tasks: report.unfinished,
        },
      );
      stopped.resolve(1);
    } else {
      log.info("stopped: every accepted task finished and was answered");
      stopped.resolve(0);
    }
  };
  const onHangup = () => {
    log.info("SIGHUP: reloading — replacing the workers one at a time with fresh ones (handler modules loaded anew)");
    server.reload();
  };
  // Log rotation: after `mv asynctask.log asynctask.log.1`, SIGUSR1 starts a new file at the path.
  // The last line of the old file and the first of the new one say so.
  const onReopen = () => {
    // Under `deno run` (not the compiled binary), Deno answers SIGUSR1 too, the way Node does: it
    // opens its debugger on 127.0.0.1:9229 (and prints "Debugger listening on …" to stderr), where
    // anyone on this machine could run code in the server. Close it at once, and again later, since
    // Deno's own handler may run after this one. (Closing a debugger that is not open does nothing.)
    // node:inspector is loaded here, at the first SIGUSR1, not by every server.
    import("node:inspector").then(({ close }) => {
      close();
      for (const ms of [0, 100, 1000]) setTimeout(close, ms);
    });
    if (underDenoRun()) {
      log.warning(
        "SIGUSR1 under `deno run`: Deno opens its debugger on 127.0.0.1:9229 when it gets this signal; the server closed it again (the compiled binary does not open it)",
      );
    }
    if (p.logFile === undefined) {
      log.info("SIGUSR1: logs go to stderr, not to a --log-file: nothing to reopen");
      return;
    }
    log.info("SIGUSR1: reopening the log file {path}", { path: p.logFile });
    try {
      reopenLogFile();
      log.info("SIGUSR1: log file {path} reopened", { path: p.logFile });
    } catch (e) {
      log.error("SIGUSR1: {error}", { error: (e as Error).message });
    }
  };
  const handlers = [
    ...(["SIGINT", "SIGTERM"] as const).map((s) => [s, onSignal(s)] as const),
    ["SIGHUP", onHangup] as const,
    // Windows has no SIGUSR1 (Deno throws when asked to listen for it).
    ...(Deno.build.os === "windows" ? [] : [["SIGUSR1", onReopen] as const]),
  ];
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  const code = await stopped.promise;
  for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  await closeLogging();
  return code;
}

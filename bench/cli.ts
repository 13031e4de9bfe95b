/**
 * `asynctask bench`: a load generator in the binary, like `redis-benchmark`. It drives a running
 * server (or one it starts itself with `--spawn`), shows a live progress bar on a terminal, and
 * ends with throughput, latency percentiles, errors by code, and lost tasks (exit code 1 if any).
 *
 * @module
 */
import { type FlagSpec, HELP_FLAG, parseFlags, renderHelp, UsageError } from "../cli/flags.ts";
import { formatDuration } from "../cli/units.ts";
import { commandFor } from "../cli/invocation.ts";
import { type LoadCounts, type LoadOptions, type LoadReport, runLoad } from "./load.ts";
import { asynctaskCommand, type ServerProcess, startServerProcess } from "./process.ts";

/** The flags of `asynctask bench`. */
export const BENCH_FLAGS: readonly FlagSpec[] = [
  { name: "host", kind: "string", default: "127.0.0.1", valueName: "addr", help: "server address" },
  { name: "port", kind: "int", default: 9501, min: 1, max: 65535, help: "server port" },
  { name: "conns", kind: "int", default: 50, min: 1, max: 20_000, help: "connections" },
  { name: "tasks", kind: "int", default: 2000, min: 1, help: "tasks per connection" },
  { name: "duration", kind: "duration", min: 1, help: "send for this long instead of --tasks" },
  { name: "window", kind: "int", default: 20, min: 1, max: 100_000, help: "tasks in flight per connection" },
  { name: "task", kind: "string", default: "echo", valueName: "name", help: "task to send" },
  { name: "data", kind: "string", default: "x", valueName: "text", help: "payload of every task" },
  { name: "payload-size", kind: "size", min: 1, help: "payload of this many bytes instead of --data" },
  { name: "json", kind: "boolean", help: "send JSON requests; print the report as JSON" },
  {
    name: "drain-timeout",
    kind: "duration",
    default: 30_000,
    min: 0,
    help: "how long to wait for results after sending",
  },
  { name: "spawn", kind: "boolean", help: "start a server for the run; serve flags go after --" },
  HELP_FLAG,
];

/** The `--help` text of `asynctask bench`, in the words the user runs it with (`./deno task load` from source). */
export const benchHelp = (): string =>
  renderHelp(
    commandFor("bench", "[flags] [--spawn [-- serve flags]]"),
    "Load-tests a server: --conns connections each keep --window tasks in flight, until each has sent\n" +
      "--tasks (or for --duration). Prints tasks/s, ACCEPTED and completion latency (p50/p90/p99/max),\n" +
      "errors by code and lost tasks; exits 1 if any accepted task never finished.\n\n" +
      `  ${commandFor("bench", "--spawn -- --workers 4")}        # one command: a server and a load`,
    BENCH_FLAGS,
  );

/** Runs `asynctask bench`; returns the exit code. */
export async function runBench(args: string[]): Promise<number> {
  const dash = args.indexOf("--");
  const serveArgs = dash >= 0 ? args.slice(dash + 1) : [];
  const flags = parseFlags("bench", BENCH_FLAGS, dash >= 0 ? args.slice(0, dash) : args);
  if (flags.bool("help")) {
    console.log(benchHelp());
    return 0;
  }
  if (serveArgs.length > 0 && !flags.bool("spawn")) {
    const fixed = [...args.slice(0, dash), "--spawn", ...args.slice(dash)].join(" ");
    throw new UsageError(`serve flags after -- need --spawn to start a server: \`${commandFor("bench", fixed)}\``);
  }
  const size = flags.values["payload-size"];
  const opts: LoadOptions = {
    host: flags.str("host")!,
    port: flags.num("port"),
    conns: flags.num("conns"),
    tasks: flags.num("tasks"),
    durationMs: typeof flags.values["duration"] === "number" ? flags.num("duration") : undefined,
    window: flags.num("window"),
    task: flags.str("task")!,
    data: typeof size === "number" ? "x".repeat(size) : flags.str("data")!,
    json: flags.bool("json"),
    drainTimeoutMs: flags.num("drain-timeout"),
  };
  let server: ServerProcess | undefined;
  if (flags.bool("spawn")) {
    // The server's port is read from its "listening on" line, which is logged at info: a quieter
    // --log-level among the serve flags is raised to info (its logs are not shown anyway).
    const quiet = serveArgs.some((a, i) =>
      /^--log-level=(warning|error)$/.test(a) ||
      (a === "--log-level" && /^(warning|error)$/.test(serveArgs[i + 1] ?? ""))
    );
    server = await startServerProcess(
      asynctaskCommand([
        "serve",
        "--port",
        "0",
        "--stats-interval",
        "0",
        ...serveArgs,
        ...(quiet ? ["--log-level", "info"] : []),
      ]),
    );
    opts.host = "127.0.0.1";
    opts.port = server.port;
  }
  const bar = Deno.stderr.isTerminal() && !opts.json ? progressBar(opts) : undefined;
  let report: LoadReport;
  try {
    report = await runLoad(opts, bar);
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused) {
      console.error(
        `${commandFor("bench")}: cannot connect to ${opts.host}:${opts.port}: connection refused — is the server ` +
          `running? Start it with \`${commandFor("serve", `--port ${opts.port}`)}\`, or add --spawn to start one`,
      );
      return 2;
    }
    throw e;
  } finally {
    if (bar) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[2K"));
  }
  const rss = server?.rssKiB();
  await server?.stop();
  if (opts.json) console.log(JSON.stringify(reportJson(report, rss)));
  else console.log(formatReport(report, opts, rss));
  return report.lost > 0 || report.unanswered > 0 ? 1 : 0;
}

function progressBar(o: LoadOptions): (c: LoadCounts, ms: number) => void {
  const total = o.durationMs ?? o.conns * o.tasks;
  return (c, ms) => {
    const fraction = o.durationMs ? Math.min(1, ms / o.durationMs) : (c.done + c.failed + c.refused) / total;
    const width = 30;
    const full = Math.round(fraction * width);
    const rate = Math.round(((c.done + c.failed) / ms) * 1000);
    const line = `\r[${"#".repeat(full)}${" ".repeat(width - full)}] ${Math.round(fraction * 100)}%  ${
      c.done + c.failed
    } done  ${rate} tasks/s  ${c.refused} refused`;
    Deno.stderr.writeSync(new TextEncoder().encode(line));
  };
}

const ms = (us: number) => (us / 1000).toFixed(us < 10_000 ? 2 : 1);

/** The report as a JSON-ready object (latencies in ms). */
export function reportJson(r: LoadReport, rssKiB?: number): Record<string, unknown> {
  const lat = (h: LoadReport["accept"]) => ({
    p50: +ms(h.percentile(0.5)),
    p90: +ms(h.percentile(0.9)),
    p99: +ms(h.percentile(0.99)),
    max: +ms(h.max),
  });
  return {
    conns: r.conns,
    sent: r.sent,
    accepted: r.accepted,
    refused: r.refused,
    done: r.done,
    failed: r.failed,
    lost: r.lost,
    unanswered: r.unanswered,
    errors: r.errors,
    failures: r.failures,
    elapsed_ms: Math.round(r.elapsedMs),
    tasks_per_sec: Math.round(r.tasksPerSec),
    accepted_latency_ms: lat(r.accept),
    completion_latency_ms: lat(r.complete),
    ...(rssKiB ? { server_rss_mib: Math.round(rssKiB / 1024) } : {}),
  };
}

/** The human summary. */
export function formatReport(r: LoadReport, o: LoadOptions, rssKiB?: number): string {
  const what = o.durationMs ? `for ${formatDuration(o.durationMs)}` : `× ${o.tasks}`;
  const lat = (h: LoadReport["accept"]) =>
    `p50 ${ms(h.percentile(0.5))} ms   p90 ${ms(h.percentile(0.9))} ms   p99 ${ms(h.percentile(0.99))} ms   max ${
      ms(h.max)
    } ms`;
  const codes = (m: Record<string, number>) => Object.entries(m).map(([k, v]) => `${v} ${k}`).join(", ") || "none";
  return [
    `asynctask bench: ${r.conns} connections ${what} ${o.task} tasks, window ${o.window} → ${o.host}:${o.port}`,
    `  throughput   ${Math.round(r.tasksPerSec)} tasks/s (${r.done + r.failed} finished in ${
      (r.elapsedMs / 1000).toFixed(2)
    } s)`,
    `  accepted     ${r.accepted} of ${r.sent} sent; refused: ${codes(r.errors)}`,
    `  finished     ${r.done} done, ${r.failed} failed${r.failed ? ` (${codes(r.failures)})` : ""}`,
    `  lost         ${r.lost}${r.unanswered ? ` (and ${r.unanswered} requests never answered)` : ""}`,
    `  ACCEPTED     ${lat(r.accept)}`,
    `  completion   ${lat(r.complete)}`,
    ...(rssKiB ? [`  server RSS   ${Math.round(rssKiB / 1024)} MiB at the end`] : []),
  ].join("\n");
}

/**
 * `deno task bench`: the standard benchmark suite. It starts its own servers on loopback and
 * prints a Markdown table (and writes JSON under `bench/results/`):
 *
 * - (a) `echo`, 50 connections × 2,000 tasks, window 20 — asynctask and the bare line responder
 * - (b) the same with window 1 — both
 * - (c) Swoole's example server's scene: 40 SMS sends at the default 5 s delay
 * - (d) 10,000 idle connections held open: the server's RSS per connection
 * - (e) load (a) against a server with `--journal` (full sync): its ratio to (a)'s in-memory server
 * - (f) 100,000 tasks delayed by 3 s, all due at once: how long after their time they have all run
 *
 * plus the server's idle RSS, its RSS under (a), how soon its RSS comes back after a load once the
 * results expired, and the asynctask/bare ratios of (a) and (b).
 *
 * Then the peers a user would pick instead, in a second table with the server CPU per task of
 * (a) and (b): BullMQ on redis-server (`bench/peers/bullmq.ts`, run with Node) and beanstalkd
 * (`bench/peers/beanstalkd.ts`), each at window 20 and window 1, each row skipped with its reason
 * where the peer cannot be installed or started. `--skip-peers` leaves them out.
 * (a), (b) and (e) run in `--rounds` rounds (default 3): each ratio is taken within a round, and
 * the table shows the median round's, with the range.
 * `--quick` runs a small version of each and checks only that every task completed and none was
 * lost — never a speed threshold (CI machines are noisy); the peers run small there, BullMQ only
 * if it is installed already.
 *
 * @module
 */
import { type Flags, type FlagSpec, HELP_FLAG, parseFlags, renderHelp, UsageError } from "../cli/flags.ts";
import { sourceTaskCommand } from "../cli/invocation.ts";
import { ECHO_LOAD, type LoadOptions, type LoadReport, runLoad, warmUp } from "./load.ts";
import { asynctaskCommand, bareCommand, startServerProcess } from "./process.ts";
import { BENCH_FLAGS, reportJson } from "./cli.ts";
import { cpuUs, loadText, type PeerLoad, type PeerOutcome } from "./peers/common.ts";
import { runBullmq } from "./peers/bullmq.ts";
import { runBeanstalkd } from "./peers/beanstalkd.ts";
import { runBrokerRows } from "./broker.ts";

/** The suite's flags. */
const SUITE_FLAGS: readonly FlagSpec[] = [
  {
    name: "quick",
    kind: "boolean",
    help: "a small run of each scene, once: checks only that every task completed and none was lost",
  },
  {
    name: "rounds",
    kind: "int",
    default: 3,
    min: 1,
    max: 100,
    help: "rounds of (a), (b) and (e); the median is shown",
  },
  { name: "skip-peers", kind: "boolean", help: "leave out the peer rows (BullMQ, beanstalkd)" },
  HELP_FLAG,
];

const suiteCommand = sourceTaskCommand("bench");
let flags: Flags;
try {
  flags = parseFlags("bench", SUITE_FLAGS, Deno.args, { typed: suiteCommand });
} catch (e) {
  if (!(e instanceof UsageError)) throw e;
  // `--conns 3`: a flag of the load generator, which is another command from source.
  const flag = Deno.args.find((a) => a.startsWith("--") && !SUITE_FLAGS.some((f) => a.split("=")[0] === `--${f.name}`));
  const theirs = flag !== undefined && BENCH_FLAGS.some((f) => flag.split("=")[0] === `--${f.name}`);
  const hint = theirs
    ? `\n${flag.split("=")[0]} is a flag of the load generator, which drives a running server: ` +
      `\`${
        sourceTaskCommand(
          "load",
          Deno.args.filter((a) => !SUITE_FLAGS.some((f) => a.split("=")[0] === `--${f.name}`)).join(" "),
        )
      }\``
    : "";
  console.error(`${suiteCommand}: ${e.message}${hint}`);
  Deno.exit(2);
}
if (flags.bool("help")) {
  console.log(renderHelp(
    `${suiteCommand} [flags]`,
    "The benchmark suite: starts its own servers on 127.0.0.1 (and the peers a user would pick instead),\n" +
      "runs a fixed set of loads, prints Markdown tables and writes JSON under bench/results/. It takes\n" +
      "several minutes and the machine's full attention: run it alone. docs/benchmarks.md explains each row.\n\n" +
      `To load-test a running server instead, use the load generator: \`${sourceTaskCommand("load", "--help")}\`.`,
    SUITE_FLAGS,
  ));
  Deno.exit(0);
}
const quick = flags.bool("quick");
/** Rounds of (a), (b) and (e); `--quick` runs one. */
const rounds = quick ? 1 : flags.num("rounds");
const results: Record<string, unknown> = { date: new Date().toISOString(), quick, deno: Deno.version.deno };
const problems: string[] = [];
const rows: string[][] = [];

const serve = (...args: string[]) =>
  startServerProcess(asynctaskCommand(["serve", "--port", "0", "--stats-interval", "0", ...args]));

function load(port: number, o: Partial<LoadOptions>): Promise<LoadReport> {
  return runLoad({ ...ECHO_LOAD, port, ...o });
}

/** A tenth of the load first, not counted ({@linkcode warmUp}). */
const warm = (port: number, o: Partial<LoadOptions>) => warmUp({ ...ECHO_LOAD, port, ...o });

function check(name: string, r: LoadReport, expected: number): void {
  if (r.lost > 0 || r.unanswered > 0 || r.done !== expected) {
    problems.push(`${name}: ${r.done} of ${expected} done, ${r.lost} lost, ${r.unanswered} unanswered`);
  }
}

const lat = (r: LoadReport) =>
  `${(r.accept.percentile(0.5) / 1000).toFixed(2)} / ${(r.accept.percentile(0.99) / 1000).toFixed(1)} ms`;
const done = (r: LoadReport) =>
  `${(r.complete.percentile(0.5) / 1000).toFixed(2)} / ${(r.complete.percentile(0.99) / 1000).toFixed(1)} ms`;

/**
 * One run of a load against a server: its report, the server's peak RSS during it (KiB), and the
 * server process's CPU time (utime + stime, all threads) during it (µs).
 */
interface Run {
  report: LoadReport;
  peakKiB: number;
  cpuUs: number;
}

/** Runs a load against a server started with these serve flags (none: the in-memory default). */
async function runOurs(o: Partial<LoadOptions>, ...serveArgs: string[]): Promise<Run> {
  const server = await serve(...serveArgs);
  await warm(server.port, o);
  let peakKiB = 0;
  const sampler = setInterval(() => (peakKiB = Math.max(peakKiB, server.rssKiB())), 100);
  const cpu0 = cpuUs(server.pid);
  const report = await load(server.port, o);
  const cpu = cpuUs(server.pid) - cpu0;
  clearInterval(sampler);
  peakKiB = Math.max(peakKiB, server.rssKiB()); // a quick run may end before the first sample
  await server.stop();
  return { report, peakKiB, cpuUs: cpu };
}

/** Runs a load against the bare line responder. */
async function runBare(o: Partial<LoadOptions>): Promise<Run> {
  const bare = await startServerProcess(bareCommand());
  await warm(bare.port, { ...o, task: "" });
  const cpu0 = cpuUs(bare.pid);
  const report = await load(bare.port, { ...o, task: "" });
  const cpu = cpuUs(bare.pid) - cpu0;
  await bare.stop();
  return { report, peakKiB: 0, cpuUs: cpu };
}

/** Runs a load against a journaled server (`--journal` in a fresh directory, full sync). */
async function runJournaled(o: Partial<LoadOptions>): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "asynctask-bench-" });
  try {
    return await runOurs(o, "--journal", `${dir}/journal.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** One round's pair: the run measured, and the run it is compared with. */
interface Pair {
  ours: Run;
  base: Run;
  ratio: number;
}

const pair = (ours: Run, base: Run): Pair => ({ ours, base, ratio: ours.report.tasksPerSec / base.report.tasksPerSec });

/** The pair of median ratio (for an even count, the lower middle one). */
function medianPair(pairs: Pair[]): Pair {
  const sorted = [...pairs].sort((x, y) => x.ratio - y.ratio);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

const pct = (x: number) => `${Math.round(x * 100)}%`;

/** "71%", or "71% (64–78%)": the median round's ratio, and the range over the rounds. */
function ratioText(pairs: Pair[]): string {
  const ratios = pairs.map((p) => p.ratio);
  const median = pct(medianPair(pairs).ratio);
  return pairs.length === 1 ? median : `${median} (${pct(Math.min(...ratios))}–${pct(Math.max(...ratios))})`;
}

/** The server's CPU per finished task in a run, µs. */
const cpuPerTask = (r: Run) => r.cpuUs / Math.max(1, r.report.done + r.report.failed);

function pairsJson(pairs: Pair[], base: "bare" | "in_memory"): Record<string, unknown> {
  const m = medianPair(pairs);
  return {
    ratio: +m.ratio.toFixed(3),
    ratio_min: +Math.min(...pairs.map((p) => p.ratio)).toFixed(3),
    ratio_max: +Math.max(...pairs.map((p) => p.ratio)).toFixed(3),
    asynctask: { ...reportJson(m.ours.report, m.ours.peakKiB), server_cpu_us_per_task: +cpuPerTask(m.ours).toFixed(1) },
    [base]: { ...reportJson(m.base.report), server_cpu_us_per_task: +cpuPerTask(m.base).toFixed(1) },
    rounds: pairs.map((p) => ({
      ratio: +p.ratio.toFixed(3),
      tasks_per_s: Math.round(p.ours.report.tasksPerSec),
      server_cpu_us_per_task: +cpuPerTask(p.ours).toFixed(1),
      [`${base}_tasks_per_s`]: Math.round(p.base.report.tasksPerSec),
    })),
  };
}

// Idle RSS of a server with 4 workers; then, on the same server, RSS after load (a) and how soon it
// comes back within 20 MiB of idle once the results expired (`--result-ttl 5s`), sampled each
// second for 90 s at most (10 s in a quick run). Reported, never a check.
let memoryLine = "";
{
  const server = await serve("--result-ttl", "5s");
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const mib = () => server.rssKiB() / 1024;
  await sleep(1000);
  const idle = mib();
  results.idle_rss_mib = Math.round(idle);
  const r = await load(server.port, { ...(quick ? { conns: 10, tasks: 200 } : {}), window: 20 });
  const after = mib();
  const t0 = performance.now();
  let now = after;
  while (now > idle + 20 && performance.now() - t0 < (quick ? 10_000 : 90_000)) {
    await sleep(1000);
    now = mib();
  }
  const s = (performance.now() - t0) / 1000;
  results.memory_after_load = {
    tasks: r.done,
    after_mib: Math.round(after),
    settled_mib: Math.round(now),
    above_idle_mib: Math.round(now - idle),
    seconds: +s.toFixed(0),
  };
  memoryLine = `; after ${r.done.toLocaleString("en-US")} echo tasks ${Math.round(after)} MiB, ${Math.round(now)} MiB ${
    s.toFixed(0)
  } s later (${Math.round(now - idle)} MiB above idle, results kept 5 s)`;
  await server.stop();
}

// (a), (b) and (e), in rounds: each round runs (a) against asynctask, the bare responder and a
// journaled asynctask back to back, then (b) against asynctask and the bare responder. A ratio is
// taken within a round (same moment, same machine weather); the table gives the median round and
// the range, because one run of a second or two on a shared 2-core machine swings by ±20%.
const small = quick ? { conns: 10, tasks: 200 } : {};
const expected = (small.conns ?? 50) * (small.tasks ?? 2000);
const loadA = { ...small, window: 20 };
const loadB = { ...small, window: 1 };
const A: Pair[] = [], B: Pair[] = [], E: Pair[] = [];
for (let round = 1; round <= rounds; round++) {
  if (rounds > 1) console.error(`round ${round} of ${rounds}: (a), (e), (b)`);
  const a = await runOurs(loadA);
  check("(a) asynctask", a.report, expected);
  const aBare = await runBare(loadA);
  check("(a) bare", aBare.report, expected);
  const e = await runJournaled(loadA);
  check("(e) journal", e.report, expected);
  const b = await runOurs(loadB);
  check("(b) asynctask", b.report, expected);
  const bBare = await runBare(loadB);
  check("(b) bare", bBare.report, expected);
  A.push(pair(a, aBare));
  E.push(pair(e, a));
  B.push(pair(b, bBare));
}
const row = (label: string, pairs: Pair[], vsBare: boolean) => {
  const m = medianPair(pairs);
  return [
    label,
    `${Math.round(m.ours.report.tasksPerSec)}`,
    vsBare ? `${Math.round(m.base.report.tasksPerSec)}` : "",
    vsBare ? ratioText(pairs) : `${ratioText(pairs)} of (a)`,
    lat(m.ours.report),
    done(m.ours.report),
    vsBare ? `${Math.round(Math.max(...pairs.map((p) => p.ours.peakKiB)) / 1024)} MiB` : "",
  ];
};
results.rounds = rounds;
results.a = pairsJson(A, "bare");
results.b = pairsJson(B, "bare");
results.e = pairsJson(E, "in_memory");
rows.push(row(quick ? "(a) echo 10×200, window 20" : "(a) echo 50×2000, window 20", A, true));
rows.push(row(quick ? "(b) echo 10×200, window 1" : "(b) echo 50×2000, window 1", B, true));
rows.push(row(quick ? "(e) = (a) with --journal" : "(e) = (a) with --journal (full sync)", E, false));

// The peers a user would pick instead, each at window 20 and window 1, smaller than (a) and (b)
// where they are slow (each row well under 20 s here). Their servers start on free loopback ports
// and stop after each row; a row that cannot run is skipped with its reason.
const peerRows: string[][] = [];
{
  const ms = (x: number) => x.toFixed(x < 10 ? 2 : 1);
  const ours = (label: string, load: string, r: Run) =>
    peerRows.push([
      label,
      load,
      `${Math.round(r.report.tasksPerSec)}`,
      cpuPerTask(r).toFixed(1),
      `${ms(r.report.complete.percentile(0.5) / 1000)} / ${ms(r.report.complete.percentile(0.99) / 1000)} ms`,
      "the server process, all threads (median round)",
    ]);
  const [ma, mb] = [medianPair(A), medianPair(B)];
  const ab = (w: number) => loadText({ conns: small.conns ?? 50, tasks: small.tasks ?? 2000, window: w });
  ours("asynctask (a)", ab(20), ma.ours);
  ours("bare responder (a)", ab(20), ma.base);
  ours("asynctask (b)", ab(1), mb.ours);
  ours("bare responder (b)", ab(1), mb.base);

  const loads = (w20: PeerLoad, w1: PeerLoad) => [w20, w1];
  const bullmqLoads = quick
    ? loads({ conns: 10, tasks: 50, window: 20 }, { conns: 10, tasks: 10, window: 1 })
    : loads({ conns: 50, tasks: 600, window: 20 }, { conns: 50, tasks: 200, window: 1 });
  const beanstalkdLoads = quick
    ? loads({ conns: 10, tasks: 100, window: 20 }, { conns: 10, tasks: 20, window: 1 })
    : loads({ conns: 50, tasks: 1000, window: 20 }, { conns: 50, tasks: 1000, window: 1 });
  const outcomes: PeerOutcome[] = [];
  if (flags.bool("skip-peers")) {
    peerRows.push(["BullMQ, beanstalkd", "", "skipped: --skip-peers", "", "", ""]);
  } else {
    for (const l of bullmqLoads) {
      console.error(`peers: BullMQ, ${loadText(l)}`);
      outcomes.push(await runBullmq(l, { install: !quick }));
    }
    for (const l of beanstalkdLoads) {
      console.error(`peers: beanstalkd, ${loadText(l)}`);
      outcomes.push(await runBeanstalkd(l));
    }
  }
  const us = (x: number) => x.toFixed(x < 10 ? 1 : 0);
  for (const o of outcomes) {
    if ("skipped" in o) {
      peerRows.push([o.peer, loadText(o.load), `skipped: ${o.skipped.replaceAll("|", "/")}`, "", "", ""]);
      continue;
    }
    const finished = o.done + o.failed;
    // A peer's own failures (BullMQ fails jobs whose lock it could not renew on a loaded machine) are
    // reported in its row and on stderr; only asynctask's scenes make the suite fail.
    const shortfall = o.failed > 0 || o.lost > 0 || o.done !== o.load.conns * o.load.tasks;
    if (shortfall) {
      console.error(
        `bench: ${o.peer}, ${loadText(o.load)}: ${o.done} done, ${o.failed} failed, ${o.lost} lost${
          o.firstError ? ` (first failure: ${o.firstError})` : ""
        }`,
      );
    }
    const split = Object.entries(o.cpuUs).map(([k, v]) => `${k} ${us(v / Math.max(1, finished))}`).join(" + ");
    const notes = [
      ...(shortfall ? [`${o.failed} failed, ${o.lost} lost of ${o.load.conns * o.load.tasks}`] : []),
      ...(o.extra.redis_commands_per_task !== undefined
        ? [`${o.extra.redis_commands_per_task.toFixed(1)} Redis commands/task`]
        : []),
      ...(o.extra.missed_events
        ? [`${o.extra.missed_events} completions missed by QueueEvents, read from the job`]
        : []),
      `CPU µs/task: ${split}`,
    ];
    peerRows.push([
      o.peer,
      loadText(o.load),
      `${Math.round(o.tasksPerSec)}`,
      o.cpuUsPerTask.toFixed(1),
      `${ms(o.p50Ms)} / ${ms(o.p99Ms)} ms`,
      notes.join("; "),
    ]);
  }
  results.peers = outcomes.map((o) =>
    "skipped" in o ? o : {
      ...o,
      elapsedMs: Math.round(o.elapsedMs),
      tasksPerSec: Math.round(o.tasksPerSec),
      cpuUsPerTask: +o.cpuUsPerTask.toFixed(1),
      p50Ms: +o.p50Ms.toFixed(2),
      p99Ms: +o.p99Ms.toFixed(2),
      cpuUs: Object.fromEntries(Object.entries(o.cpuUs).map(([k, v]) => [k, Math.round(v)])),
      extra: Object.fromEntries(Object.entries(o.extra).map(([k, v]) => [k, +v.toFixed(2)])),
    }
  );
}

// (g) The broker: one server in memory, one on Redis, two on Redis sharing a port; pipelined.
const brokerRows: string[][] = [];
{
  const g = await runBrokerRows(quick ? { conns: 10, tasks: 200 } : {});
  const n = quick ? 2000 : 100_000;
  const base = g[0].report?.tasksPerSec ?? 0;
  for (const r of g) {
    if (!r.report) {
      brokerRows.push([r.label, `skipped: ${r.skipped}`, "", "", "", "", ""]);
      continue;
    }
    check(`(g) ${r.label}`, r.report, n);
    brokerRows.push([
      r.label,
      `${Math.round(r.report.tasksPerSec)}`,
      base ? `${(base / r.report.tasksPerSec).toFixed(2)}×` : "",
      r.asynctaskCpu.toFixed(1),
      r.redisCpu ? r.redisCpu.toFixed(1) : "",
      r.commands ? r.commands.toFixed(2) : "",
      lat(r.report),
    ]);
  }
  results.g = g.map((r) => ({
    label: r.label,
    ...(r.report
      ? {
        tasks_per_sec: Math.round(r.report.tasksPerSec),
        asynctask_cpu_us_per_task: +r.asynctaskCpu.toFixed(1),
        redis_cpu_us_per_task: +r.redisCpu.toFixed(1),
        redis_commands_per_task: +r.commands.toFixed(2),
        report: reportJson(r.report),
      }
      : { skipped: r.skipped }),
  }));
}

// (c) The scene of Swoole's example server: 40 clients send an SMS each.
{
  const n = quick ? 4 : 40;
  const server = await serve(...(quick ? ["--sms-delay", "200ms"] : []));
  const t0 = performance.now();
  const r = await load(server.port, { conns: n, tasks: 1, window: 1, task: "sms", data: "13800138000" });
  const seconds = (performance.now() - t0) / 1000;
  await server.stop();
  check("(c) sms", r, n);
  results.c = { sends: n, all_done_after_s: +seconds.toFixed(2), report: reportJson(r) };
  rows.push([
    `(c) ${n} SMS, ${quick ? "200 ms" : "5 s"} each`,
    "",
    "",
    "",
    lat(r),
    `all done in ${seconds.toFixed(2)} s`,
    "",
  ]);
}

// (d) Idle connections.
{
  const n = quick ? 200 : 10_000;
  const server = await serve("--max-conns", String(n + 100));
  await new Promise((r) => setTimeout(r, 500));
  const before = server.rssKiB();
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < n; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port: server.port }));
  // Make sure the server has accepted them all: a ping on the last one is answered after the others.
  const last = conns[conns.length - 1];
  await last.write(new TextEncoder().encode("/ping\n"));
  await last.read(new Uint8Array(16));
  await new Promise((r) => setTimeout(r, 1000));
  const after = server.rssKiB();
  for (const c of conns) c.close();
  await server.stop();
  const perConn = (after - before) / n;
  results.d = {
    connections: n,
    rss_before_mib: Math.round(before / 1024),
    rss_after_mib: Math.round(after / 1024),
    kib_per_connection: +perConn.toFixed(2),
  };
  rows.push([
    `(d) ${n} idle connections`,
    "",
    "",
    "",
    "",
    "",
    `${Math.round(after / 1024)} MiB (${perConn.toFixed(1)} KiB each)`,
  ]);
}

// (f) Delayed tasks all due at once: 100,000 tasks with "delay": "3s", sent over 10 connections;
// how long after their time they have all run.
{
  const n = quick ? 2000 : 100_000;
  const conns = 10;
  const delayMs = quick ? 1000 : 3000;
  const server = await serve("--max-queue-bytes", "0", "--queue-size", String(n * 2));
  const clients = await Promise.all(
    Array.from({ length: conns }, () => Deno.connect({ hostname: "127.0.0.1", port: server.port })),
  );
  const line = new TextEncoder().encode(`{"task":"echo","data":"x","delay":"${delayMs}ms"}\n`.repeat(n / conns));
  const t0 = performance.now();
  // Each connection: send its share, then read until it has seen every ACCEPTED and every DONE.
  const lastDone = await Promise.all(clients.map(async (c) => {
    const writing = (async () => {
      for (let at = 0; at < line.length;) at += await c.write(line.subarray(at));
    })();
    let seen = 0;
    let last = 0;
    let accepted = 0;
    let rest = "";
    const buf = new Uint8Array(64 * 1024);
    const dec = new TextDecoder();
    while (seen < (2 * n) / conns) {
      const got = await c.read(buf);
      if (got === null) break;
      const text = rest + dec.decode(buf.subarray(0, got), { stream: true });
      const lines = text.split("\n");
      rest = lines.pop()!;
      for (const l of lines) {
        seen++;
        if (l.includes('"done"')) last = performance.now();
        else if (l.includes('"accepted"')) accepted = performance.now();
      }
    }
    await writing;
    c.close();
    return [accepted, last];
  }));
  // Measured from the last task's time (its ACCEPTED plus the delay): the run is all due by then.
  const due = Math.max(...lastDone.map(([a]) => a)) + delayMs;
  const allDone = Math.max(...lastDone.map(([, d]) => d));
  const lateMs = allDone - due;
  results.f_sent_s = +((due - delayMs - t0) / 1000).toFixed(2);
  await server.stop();
  results.f = { tasks: n, delay_ms: delayMs, all_done_after_due_ms: Math.round(lateMs) };
  rows.push([
    `(f) ${n.toLocaleString("en-US")} delayed tasks due at once`,
    "",
    "",
    "",
    "",
    `all done ${(lateMs / 1000).toFixed(2)} s after the last one's time`,
    "",
  ]);
}

console.log(`
| scene | asynctask tasks/s | bare tasks/s | ratio | ACCEPTED p50 / p99 | completion p50 / p99 | server RSS |
| --- | --- | --- | --- | --- | --- | --- |
${rows.map((r) => `| ${r.join(" | ")} |`).join("\n")}

Idle server with 4 workers: ${results.idle_rss_mib} MiB RSS${memoryLine}.

Peers (tasks/s; CPU µs per finished task across the load, utime + stime from /proc):

| system | load | tasks/s | server CPU µs/task | completion p50 / p99 | notes |
| --- | --- | --- | --- | --- | --- |
${peerRows.map((r) => `| ${r.join(" | ")} |`).join("\n")}

(g) The broker, ${
  quick ? "10×200" : "50×2000"
} echo tasks, window 20 (CPU µs per task; Redis commands per task from INFO commandstats):

| setup | tasks/s | slower than in memory | asynctask CPU µs/task | redis-server CPU µs/task | Redis commands/task | ACCEPTED p50 / p99 |
| --- | --- | --- | --- | --- | --- | --- |
${brokerRows.map((r) => `| ${r.join(" | ")} |`).join("\n")}`);

if (!quick) {
  const dir = new URL("./results/", import.meta.url);
  await Deno.mkdir(dir, { recursive: true });
  const file = new URL(`${(results.date as string).replace(/[:.]/g, "-")}.json`, dir);
  await Deno.writeTextFile(file, JSON.stringify(results, null, 2) + "\n");
  console.log(`JSON: ${file.pathname}`);
}
if (problems.length > 0) {
  console.error(`bench: tasks went missing:\n  ${problems.join("\n  ")}`);
  Deno.exit(1);
}
console.log(quick ? "bench --quick: every task completed, none lost" : "");

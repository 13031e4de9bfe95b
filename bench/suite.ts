/**
 * `deno task bench`: the standard benchmark suite. It starts its own servers on loopback and
 * prints a Markdown table (and writes JSON under `bench/results/`):
 *
 * - (a) `echo`, 50 connections × 2,000 tasks, window 20 — asynctask and the bare line responder
 * - (b) the same with window 1 — both
 * - (c) the seed's scene: 40 SMS sends at the default 5 s delay
 * - (d) 10,000 idle connections held open: the server's RSS per connection
 * - (e) load (a) against a server with `--journal` (full sync): its ratio to (a)'s in-memory server
 *
 * plus the server's idle RSS and its RSS under (a), and the asynctask/bare ratios of (a) and (b).
 * `--quick` runs a small version of each and checks only that every task completed and none was
 * lost — never a speed threshold (CI machines are noisy).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type LoadOptions, type LoadReport, runLoad } from "./load.ts";
import { asynctaskCommand, bareCommand, type ServerProcess, startServerProcess } from "./process.ts";
import { reportJson } from "./cli.ts";

const { values } = parseArgs({ options: { quick: { type: "boolean", default: false } } });
const quick = values.quick!;
const results: Record<string, unknown> = { date: new Date().toISOString(), quick, deno: Deno.version.deno };
const problems: string[] = [];
const rows: string[][] = [];

const serve = (...args: string[]) =>
  startServerProcess(asynctaskCommand(["serve", "--port", "0", "--stats-interval", "0", ...args]));

function load(port: number, o: Partial<LoadOptions>): Promise<LoadReport> {
  return runLoad({
    host: "127.0.0.1",
    port,
    conns: 50,
    tasks: 2000,
    window: 20,
    task: "echo",
    data: "x",
    json: false,
    drainTimeoutMs: 30_000,
    ...o,
  });
}

function check(name: string, r: LoadReport, expected: number): void {
  if (r.lost > 0 || r.unanswered > 0 || r.done !== expected) {
    problems.push(`${name}: ${r.done} of ${expected} done, ${r.lost} lost, ${r.unanswered} unanswered`);
  }
}

const lat = (r: LoadReport) =>
  `${(r.accept.percentile(0.5) / 1000).toFixed(2)} / ${(r.accept.percentile(0.99) / 1000).toFixed(1)} ms`;
const done = (r: LoadReport) =>
  `${(r.complete.percentile(0.5) / 1000).toFixed(2)} / ${(r.complete.percentile(0.99) / 1000).toFixed(1)} ms`;

let inMemoryA = 0;

/** Runs a load against asynctask and the bare responder; returns the row and the ratio. */
async function compare(label: string, o: Partial<LoadOptions>, sampleRss?: (s: ServerProcess) => void) {
  const expected = (o.conns ?? 50) * (o.tasks ?? 2000);
  const server = await serve();
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, server.rssKiB())), 100);
  const ours = await load(server.port, o);
  clearInterval(sampler);
  sampleRss?.(server);
  await server.stop();
  check(`${label} asynctask`, ours, expected);
  const bare = await startServerProcess(bareCommand());
  const theirs = await load(bare.port, { ...o, task: "" });
  await bare.stop();
  check(`${label} bare`, theirs, expected);
  const ratio = ours.tasksPerSec / theirs.tasksPerSec;
  if (o.window === 20) inMemoryA = ours.tasksPerSec;
  rows.push([
    label,
    `${Math.round(ours.tasksPerSec)}`,
    `${Math.round(theirs.tasksPerSec)}`,
    `${Math.round(ratio * 100)}%`,
    lat(ours),
    done(ours),
    `${Math.round(peak / 1024)} MiB`,
  ]);
  return { asynctask: reportJson(ours, peak), bare: reportJson(theirs), ratio: +ratio.toFixed(3) };
}

// Idle RSS of a server with 4 workers.
{
  const server = await serve();
  await new Promise((r) => setTimeout(r, 1000));
  results.idle_rss_mib = Math.round(server.rssKiB() / 1024);
  await server.stop();
}

const small = quick ? { conns: 10, tasks: 200 } : {};
results.a = await compare(quick ? "(a) echo 10×200, window 20" : "(a) echo 50×2000, window 20", {
  ...small,
  window: 20,
});
results.b = await compare(quick ? "(b) echo 10×200, window 1" : "(b) echo 50×2000, window 1", { ...small, window: 1 });

// (e) The same load as (a), durable: every task journaled before ACCEPTED and before DONE.
{
  const dir = await Deno.makeTempDir({ prefix: "asynctask-bench-" });
  const expected = (small.conns ?? 50) * (small.tasks ?? 2000);
  const server = await serve("--journal", `${dir}/journal.db`);
  const r = await load(server.port, { ...small, window: 20 });
  await server.stop();
  await Deno.remove(dir, { recursive: true });
  check("(e) journal", r, expected);
  const ratio = r.tasksPerSec / inMemoryA;
  results.e = { report: reportJson(r), ratio_to_in_memory: +ratio.toFixed(3) };
  rows.push([
    quick ? "(e) = (a) with --journal" : "(e) = (a) with --journal (full sync)",
    `${Math.round(r.tasksPerSec)}`,
    "",
    `${Math.round(ratio * 100)}% of (a)`,
    lat(r),
    done(r),
    "",
  ]);
}

// (c) The seed's scene.
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

console.log(`
| scene | asynctask tasks/s | bare tasks/s | ratio | ACCEPTED p50 / p99 | completion p50 / p99 | server RSS |
| --- | --- | --- | --- | --- | --- | --- |
${rows.map((r) => `| ${r.join(" | ")} |`).join("\n")}

Idle server with 4 workers: ${results.idle_rss_mib} MiB RSS.`);

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

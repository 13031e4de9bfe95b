/**
 * The BullMQ peer rows: BullMQ 6.7.0 (with ioredis, pinned in `bench/peers/bullmq/package.json`,
 * installed there with `npm ci` on first use) on the machine's `redis-server`, run with Node.
 * Each row starts its own redis-server on a free loopback port (no persistence, a fresh temp dir),
 * one Node worker process (`Worker`, echo jobs) and one Node producer process (`Queue` +
 * `QueueEvents`, the submitters), and stops them all afterwards.
 *
 * CPU counts the producer, the worker and redis-server: with BullMQ the client library does the
 * queue's work (Lua scripts, the event stream), so there is no server to count alone. Redis
 * commands per task are the calls in `INFO commandstats` (reset before the load), commands run
 * inside Lua scripts included, divided by the tasks.
 *
 * ```sh
 * deno run -A bench/peers/bullmq.ts --conns 50 --tasks 1000 --window 20
 * ```
 *
 * @module
 */
import { cpuUs, freePort, type PeerLoad, type PeerOutcome, reason, startChild, which } from "./common.ts";
import { redisCalls, redisCommand, startRedis } from "./redis.ts";

const DIR = new URL("./bullmq/", import.meta.url).pathname;
/** Jobs a worker process runs at once. */
export const BULLMQ_CONCURRENCY = 50;

/** Whether BullMQ is installed under `bench/peers/bullmq/node_modules`. */
export function bullmqInstalled(): boolean {
  try {
    Deno.statSync(`${DIR}node_modules/bullmq/package.json`);
    Deno.statSync(`${DIR}node_modules/ioredis/package.json`);
    return true;
  } catch {
    return false;
  }
}

/** Why BullMQ cannot run here (no node, no npm, no redis-server), or `undefined`. */
export function bullmqMissing(): string | undefined {
  if (!which("node")) return "node not found on PATH";
  if (!which("redis-server")) return "redis-server not found on PATH (Debian: apt install redis-server)";
  if (!bullmqInstalled() && !which("npm")) return "npm not found on PATH, and BullMQ is not installed";
  return undefined;
}

/** Installs BullMQ with `npm ci` (from the lock file) unless it is there; throws on failure. */
export async function installBullmq(): Promise<void> {
  if (bullmqInstalled()) return;
  console.error("bench: installing BullMQ into bench/peers/bullmq/node_modules (npm ci)");
  const out = await new Deno.Command("npm", {
    args: ["ci", "--no-audit", "--no-fund", "--loglevel", "error"],
    cwd: DIR,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success || !bullmqInstalled()) {
    throw new Error(`npm ci failed: ${new TextDecoder().decode(out.stderr).trim() || `exit code ${out.code}`}`);
  }
}

/** Runs one BullMQ row; a row that cannot run comes back skipped, with the reason. */
export async function runBullmq(load: PeerLoad, o: { install: boolean }): Promise<PeerOutcome> {
  const peer = "BullMQ 6.7.0 on redis-server";
  const missing = bullmqMissing();
  if (missing) return { peer, load, skipped: missing };
  try {
    if (o.install) await installBullmq();
    else if (!bullmqInstalled()) {
      return { peer, load, skipped: "BullMQ is not installed in bench/peers/bullmq (the full suite installs it)" };
    }
  } catch (e) {
    return { peer, load, skipped: reason(e) };
  }
  const node = which("node")!;
  const dir = await Deno.makeTempDir({ prefix: "asynctask-bench-redis-" });
  const stops: (() => Promise<void>)[] = [];
  try {
    const port = freePort();
    const redis = await startRedis(port, dir);
    stops.push(() => redis.stop());
    const worker = await startChild(
      [node, `${DIR}bench.mjs`, "worker", "--port", String(port), "--concurrency", String(BULLMQ_CONCURRENCY)],
      /^ready$/m,
      { cwd: DIR },
    );
    stops.push(() => worker.stop());
    await redisCommand(port, "CONFIG RESETSTAT");
    const before = { worker: cpuUs(worker.pid), redis: cpuUs(redis.pid) };
    const args = ["--port", port, "--conns", load.conns, "--tasks", load.tasks, "--window", load.window];
    const producer = new Deno.Command(node, {
      args: [`${DIR}bench.mjs`, "producer", ...args.map(String)],
      cwd: DIR,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const killer = setTimeout(() => producer.kill("SIGKILL"), 120_000);
    const out = await producer.output();
    clearTimeout(killer);
    const after = { worker: cpuUs(worker.pid), redis: cpuUs(redis.pid) };
    const calls = await redisCalls(port);
    const stdout = new TextDecoder().decode(out.stdout);
    if (!out.success) {
      throw new Error(`the producer failed (code ${out.code}): ${new TextDecoder().decode(out.stderr).trim()}`);
    }
    const r = JSON.parse(stdout.trim().split("\n").pop()!) as {
      done: number;
      failed: number;
      missed: number;
      first_error?: string;
      elapsed_ms: number;
      cpu_us: number;
      p50_ms: number;
      p99_ms: number;
    };
    const cpu = {
      producer: r.cpu_us,
      worker: after.worker - before.worker,
      "redis-server": after.redis - before.redis,
    };
    const finished = r.done + r.failed;
    const total = Object.values(cpu).reduce((a, b) => a + b, 0);
    return {
      peer,
      load,
      done: r.done,
      failed: r.failed,
      lost: load.conns * load.tasks - finished,
      elapsedMs: r.elapsed_ms,
      tasksPerSec: (finished / Math.max(1, r.elapsed_ms)) * 1000,
      cpuUs: cpu,
      cpuUsPerTask: total / Math.max(1, finished),
      p50Ms: r.p50_ms,
      p99Ms: r.p99_ms,
      extra: {
        redis_commands_per_task: calls / Math.max(1, finished),
        worker_concurrency: BULLMQ_CONCURRENCY,
        // Completions QueueEvents did not report within 2 s, read from the job instead.
        missed_events: r.missed,
      },
      ...(r.first_error ? { firstError: r.first_error } : {}),
    };
  } catch (e) {
    return { peer, load, skipped: reason(e) };
  } finally {
    for (const stop of stops.reverse()) await stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    options: {
      conns: { type: "string", default: "50" },
      tasks: { type: "string", default: "1000" },
      window: { type: "string", default: "20" },
    },
  });
  const r = await runBullmq(
    { conns: Number(values.conns), tasks: Number(values.tasks), window: Number(values.window) },
    { install: true },
  );
  console.log(JSON.stringify(r, null, 2));
}

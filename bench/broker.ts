/**
 * Scene (f) of the suite: the broker. The same pipelined echo load against one server in memory,
 * one server on Redis (`--broker`), and two servers on Redis sharing one port (`--reuse-port`):
 * tasks/s, the CPU per task of asynctask (all its servers) and of redis-server, and the Redis
 * commands per task (`INFO commandstats`, scripts' commands included). Each Redis row starts its
 * own redis-server (no persistence) on a free loopback port.
 *
 * @module
 */
import { ECHO_LOAD, runLoad, warmUp } from "./load.ts";
import type { LoadOptions, LoadReport } from "./load.ts";
import { asynctaskCommand, type ServerProcess, startServerProcess } from "./process.ts";
import { cpuUs, freePort, reason, which } from "./peers/common.ts";
import { redisCalls, redisCommand, startRedis } from "./peers/redis.ts";

/** One row of scene (f). */
export interface BrokerRow {
  label: string;
  report?: LoadReport;
  /** Why it did not run. */
  skipped?: string;
  /** CPU µs per task: asynctask's servers, and redis-server. */
  asynctaskCpu: number;
  redisCpu: number;
  /** Redis commands per task. */
  commands: number;
}

/** Runs the three rows with `load` (50 connections × 2,000 echo tasks, window 20, unless smaller). */
export async function runBrokerRows(load: Partial<LoadOptions>): Promise<BrokerRow[]> {
  const rows: BrokerRow[] = [];
  rows.push(await row("one server, in memory", load, 0));
  if (!which("redis-server")) {
    const skipped = "redis-server not found on PATH (Debian: apt install redis-server)";
    rows.push({ label: "one server on Redis", skipped, asynctaskCpu: 0, redisCpu: 0, commands: 0 });
    rows.push({ label: "two servers on Redis, one port", skipped, asynctaskCpu: 0, redisCpu: 0, commands: 0 });
    return rows;
  }
  rows.push(await row("one server on Redis (--broker)", load, 1));
  rows.push(await row("two servers on Redis, one port (--reuse-port)", load, 2));
  return rows;
}

async function row(label: string, o: Partial<LoadOptions>, servers: number): Promise<BrokerRow> {
  const dir = await Deno.makeTempDir({ prefix: "asynctask-bench-broker-" });
  const stops: (() => Promise<unknown>)[] = [];
  try {
    let redisPort = 0;
    let redisPid = 0;
    const args = ["serve", "--port", "0", "--stats-interval", "0"];
    if (servers > 0) {
      redisPort = freePort();
      const redis = await startRedis(redisPort, dir);
      redisPid = redis.pid;
      stops.push(() => redis.stop());
      args.push("--broker", `redis://127.0.0.1:${redisPort}/0`);
    }
    const port = servers > 1 ? freePort() : 0;
    if (servers > 1) args.push("--port", String(port), "--reuse-port");
    const started: ServerProcess[] = [];
    for (let i = 0; i < Math.max(1, servers); i++) {
      const s = await startServerProcess(asynctaskCommand(args));
      stops.unshift(() => s.stop());
      started.push(s);
    }
    await warmUp({ ...ECHO_LOAD, port: started[0].port, drainTimeoutMs: 60_000, ...o });
    if (redisPort) await redisCommand(redisPort, "CONFIG RESETSTAT");
    const ours = () => started.reduce((sum, s) => sum + cpuUs(s.pid), 0);
    const [cpu0, redis0] = [ours(), redisPid ? cpuUs(redisPid) : 0];
    const report = await runLoad({ ...ECHO_LOAD, port: started[0].port, drainTimeoutMs: 60_000, ...o });
    const finished = Math.max(1, report.done + report.failed);
    const calls = redisPort ? await redisCalls(redisPort) : 0;
    return {
      label,
      report,
      asynctaskCpu: (ours() - cpu0) / finished,
      redisCpu: redisPid ? (cpuUs(redisPid) - redis0) / finished : 0,
      // CONFIG RESETSTAT and INFO themselves count one each.
      commands: redisPort ? Math.max(0, calls - 2) / finished : 0,
    };
  } catch (e) {
    return { label, skipped: reason(e), asynctaskCpu: 0, redisCpu: 0, commands: 0 };
  } finally {
    for (const stop of stops) await stop().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

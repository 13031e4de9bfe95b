/**
 * The load generator behind `asynctask bench`: `conns` connections, each keeping up to `window`
 * tasks in flight (sent and not yet finished), for a number of tasks or a duration. It measures
 * the latency to `ACCEPTED` and to the final reply with {@linkcode Histogram}s, counts refusals and
 * failures by code, and counts tasks that were accepted but never finished (lost).
 *
 * Immediate replies come in request order, so each connection matches them to a FIFO of send
 * times; final replies are matched by task id. Replies are classified by their first character,
 * which keeps the generator cheap enough not to be the bottleneck.
 *
 * @module
 */
import { readLines } from "../client/connection.ts";
import { Deque } from "../task/queue.ts";
import { Histogram } from "./histogram.ts";

/** What to send, how much, how fast. */
export interface LoadOptions {
  host: string;
  port: number;
  conns: number;
  /** Tasks per connection (ignored when `durationMs` is set). */
  tasks: number;
  /** Send for this long instead of a fixed number of tasks. */
  durationMs?: number;
  /** Tasks in flight per connection. */
  window: number;
  task: string;
  /** The payload of every task. */
  data: string;
  /** Send JSON requests instead of text. */
  json: boolean;
  /** After sending stops, how long to wait for outstanding final replies. */
  drainTimeoutMs: number;
}

/** Live counters, for a progress display. */
export interface LoadCounts {
  sent: number;
  accepted: number;
  refused: number;
  done: number;
  failed: number;
}

/** The result of a run. */
export interface LoadReport extends LoadCounts {
  conns: number;
  /** From the first request to the last final reply, ms. */
  elapsedMs: number;
  /** Finished tasks (done + failed) per second. */
  tasksPerSec: number;
  /** Requests that never got their immediate reply. */
  unanswered: number;
  /** Accepted tasks that never got their final reply. */
  lost: number;
  errors: Record<string, number>;
  failures: Record<string, number>;
  accept: Histogram;
  complete: Histogram;
}

/** The suite's echo load: 50 connections × 2,000 echo tasks, window 20 (pipelined); a scene changes what it needs. */
export const ECHO_LOAD: Omit<LoadOptions, "port"> = {
  host: "127.0.0.1",
  conns: 50,
  tasks: 2000,
  window: 20,
  task: "echo",
  data: "x",
  json: false,
  drainTimeoutMs: 30_000,
};

/**
 * Runs a tenth of a load first, not measured: what the suite measures is a server that has been
 * up a while, not its first seconds. V8 compiles a server's hot functions during its first tens
 * of thousands of tasks (a fresh server's first 100,000 echo tasks saw ~240 ms of compilation on
 * V8's threads, ~2 µs per task), and a server that stays up for months pays that once.
 */
export async function warmUp(o: LoadOptions): Promise<void> {
  await runLoad({ ...o, tasks: Math.max(1, Math.ceil(o.tasks / 10)) });
}

/**
 * Runs a load and returns its report. `onTick` is called every 200 ms with the live counts.
 *
 * @example
 * ```ts ignore
 * const report = await runLoad({ host: "127.0.0.1", port: 9501, conns: 50, tasks: 2000, window: 20,
 *   task: "echo", data: "x", json: false, drainTimeoutMs: 30_000 });
 * console.log(report.tasksPerSec, report.accept.percentile(0.99));
 * ```
 */
export async function runLoad(
  o: LoadOptions,
  onTick?: (c: LoadCounts, elapsedMs: number) => void,
): Promise<LoadReport> {
  const counts: LoadCounts = { sent: 0, accepted: 0, refused: 0, done: 0, failed: 0 };
  const errors: Record<string, number> = {};
  const failures: Record<string, number> = {};
  const accept = new Histogram();
  const complete = new Histogram();
  const line = o.json
    ? JSON.stringify({ task: o.task, data: o.data })
    : o.task === ""
    ? o.data
    : `/task ${o.task} ${o.data}`;
  const lineBytes = new TextEncoder().encode(line + "\n");
  const batch = new Uint8Array(lineBytes.length * o.window);
  for (let i = 0; i < o.window; i++) batch.set(lineBytes, i * lineBytes.length);

  const sockets = await Promise.all(
    Array.from({ length: o.conns }, () => Deno.connect({ hostname: o.host, port: o.port })),
  );
  for (const s of sockets) s.setNoDelay(true);
  const t0 = performance.now();
  let lastFinal = t0;
  let sending = true;
  const stopTimer = o.durationMs !== undefined ? setTimeout(() => (sending = false), o.durationMs) : undefined;
  const ticker = onTick ? setInterval(() => onTick(counts, performance.now() - t0), 200) : undefined;

  let unanswered = 0;
  let lost = 0;
  const runs = sockets.map(async (conn) => {
    const sentAt = new Deque<number>();
    const byId = new Map<number, number>();
    let inflight = 0;
    let sent = 0;
    let writing = false;
    let refillAgain = false;
    const finished = Promise.withResolvers<void>();
    const more = () => sending && (o.durationMs !== undefined || sent < o.tasks);
    const checkDone = () => {
      if (!more() && inflight === 0) finished.resolve();
    };

    const refill = async () => {
      if (writing) {
        refillAgain = true;
        return;
      }
      writing = true;
      try {
        do {
          refillAgain = false;
          let n = o.window - inflight;
          if (o.durationMs === undefined) n = Math.min(n, o.tasks - sent);
          if (!more() || n <= 0) break;
          const now = performance.now();
          for (let i = 0; i < n; i++) sentAt.push(now);
          inflight += n;
          sent += n;
          counts.sent += n;
          const bytes = batch.subarray(0, n * lineBytes.length);
          for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
        } while (refillAgain);
      } catch {
        finished.resolve(); // the server closed the connection
      } finally {
        writing = false;
      }
      checkDone();
    };

    let refillScheduled = false;
    const onLine = (text: string) => {
      const now = performance.now();
      let kind = text.charCodeAt(0);
      let id = 0;
      let code = "";
      if (kind === 123 /* { */) {
        const obj = JSON.parse(text) as { type: string; task_id?: number; error?: { code: string } };
        kind = obj.type === "accepted"
          ? 65
          : obj.type === "done"
          ? 68
          : obj.type === "failed"
          ? 70
          : obj.type === "error"
          ? 69
          : 0;
        id = obj.task_id ?? 0;
        code = obj.error?.code ?? "";
      } else {
        const a = text.indexOf(" ");
        const b = text.indexOf(" ", a + 1);
        const second = text.slice(a + 1, b < 0 ? undefined : b);
        if (kind === 69 /* E */) code = second;
        else id = Number(second);
        if (kind === 70 /* F */) code = text.slice(b + 1, text.indexOf(" ", b + 1));
      }
      if (kind === 65 /* ACCEPTED */) {
        const at = sentAt.shift() ?? now;
        accept.record((now - at) * 1000);
        byId.set(id, at);
        counts.accepted++;
        return;
      }
      if (kind === 69 /* ERROR */) {
        const at = sentAt.shift() ?? now;
        accept.record((now - at) * 1000);
        errors[code] = (errors[code] ?? 0) + 1;
        counts.refused++;
        inflight--;
      } else if (kind === 68 /* DONE */ || kind === 70 /* FAILED */) {
        const at = byId.get(id);
        if (at === undefined) return;
        byId.delete(id);
        complete.record((now - at) * 1000);
        lastFinal = now;
        inflight--;
        if (kind === 68) counts.done++;
        else {
          counts.failed++;
          failures[code] = (failures[code] ?? 0) + 1;
        }
      } else {
        return;
      }
      if (!refillScheduled) {
        refillScheduled = true;
        queueMicrotask(() => {
          refillScheduled = false;
          refill();
        });
      }
      checkDone();
    };

    const reading = readLines(conn, onLine).then(() => finished.resolve());
    refill();
    await finished.promise;
    if (sending === false || !more()) {
      // Sending is over: give the outstanding tasks their drain time.
      const deadline = performance.now() + o.drainTimeoutMs;
      while (inflight > 0 && performance.now() < deadline && byId.size + sentAt.length > 0) {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    unanswered += sentAt.length;
    lost += byId.size;
    try {
      conn.close();
    } catch {
      // closed
    }
    await reading;
  });
  await Promise.all(runs);
  clearTimeout(stopTimer);
  clearInterval(ticker);
  const elapsedMs = Math.max(1, lastFinal - t0);
  return {
    ...counts,
    conns: o.conns,
    elapsedMs,
    tasksPerSec: ((counts.done + counts.failed) / elapsedMs) * 1000,
    unanswered,
    lost,
    errors,
    failures,
    accept,
    complete,
  };
}

/**
 * `deno task soak`: floods a real `asynctask serve` (a child process, loopback only) far beyond its
 * capacity for a bounded time, with a handler that randomly throws, hangs and crashes its worker,
 * and checks the server's two promises: every request gets one immediate reply, every accepted
 * task exactly one final reply. Meanwhile it pings the server from fresh connections and samples
 * its memory. Exit code 1 when anything was lost or duplicated.
 *
 * ```sh
 * ./deno task soak                      # 20 s, 50 connections
 * ./deno task soak --duration 60s --conns 200
 * SOAK_CPU_PROF=/tmp/prof ./deno task soak --task echo   # also write the server's CPU profiles there
 * SOAK_SERVE_ARGS="--worker-nice 0" ./deno task soak     # extra serve flags
 * CHAOS_ODDS='{"hang": 0}' ./deno task soak              # change the chaos handler's odds (bench/chaos_handlers.ts)
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { parseDuration } from "../cli/units.ts";
import { readLines } from "../client/connection.ts";
import { parseReply } from "../client/replies.ts";

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "20s" },
    conns: { type: "string", default: "50" },
    burst: { type: "string", default: "100" },
    task: { type: "string", default: "chaos" },
    json: { type: "boolean", default: false },
  },
});
const durationMs = parseDuration(args.duration!);
const connCount = Number(args.conns);
const burst = Number(args.burst);
const ROOT = new URL("../", import.meta.url).pathname;
const enc = new TextEncoder();
const progress = Deno.stderr.isTerminal();

// --- the server -------------------------------------------------------------------------------
const serverArgs = [
  "serve",
  "--port",
  "0",
  "--module",
  `${ROOT}bench/chaos_handlers.ts`,
  "--task",
  args.task!,
  "--task-timeout",
  "500ms",
  "--retries",
  "1",
  "--retry-backoff",
  "20ms",
  "--queue-size",
  "20000",
  "--stats-interval",
  "0",
  "--log-format",
  "json",
  ...(Deno.env.get("SOAK_SERVE_ARGS")?.split(" ").filter(Boolean) ?? []),
];
const server = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    ...(Deno.env.get("SOAK_CPU_PROF") ? ["--cpu-prof", `--cpu-prof-dir=${Deno.env.get("SOAK_CPU_PROF")}`] : []),
    `${ROOT}main.ts`,
    ...serverArgs,
  ],
  stdin: "null",
  stdout: "null",
  stderr: "piped",
  env: { NO_COLOR: "1" },
}).spawn();
const faults = { crashed: 0, killed: 0, retried: 0 };
const listening = Promise.withResolvers<number>();
const serverLog = (async () => {
  for await (const chunk of server.stderr.pipeThrough(new TextDecoderStream())) {
    for (const line of chunk.split("\n")) {
      const port = /"address":"[\d.]+:(\d+)"/.exec(line)?.[1];
      if (port) listening.resolve(Number(port));
      if (line.includes("crashed (")) faults.crashed++;
      else if (line.includes("terminated and replaced")) faults.killed++;
      else if (line.includes("retrying in")) faults.retried++;
    }
  }
  listening.reject(new Error("the server exited before it listened"));
})();
const port = await listening.promise;

// --- bookkeeping --------------------------------------------------------------------------------
const counts = {
  requests: 0,
  immediate: 0,
  accepted: 0,
  refused: {} as Record<string, number>,
  done: 0,
  failed: {} as Record<string, number>,
  duplicated: 0,
  unknownFinal: 0,
};
/** Per task id: 1 accepted and waiting, 2 finished. */
let stateOf = new Uint8Array(1 << 20);
const stateAt = (id: number) => {
  while (id >= stateOf.length) {
    const bigger = new Uint8Array(stateOf.length * 2);
    bigger.set(stateOf);
    stateOf = bigger;
  }
  return id;
};
let outstanding = 0;

function onReply(line: string): void {
  const r = parseReply(line);
  switch (r.type) {
    case "accepted":
      counts.immediate++;
      counts.accepted++;
      stateOf[stateAt(r.taskId!)] = 1;
      outstanding++;
      return;
    case "error":
      counts.immediate++;
      counts.refused[r.code!] = (counts.refused[r.code!] ?? 0) + 1;
      return;
    case "done":
    case "failed": {
      const id = stateAt(r.taskId!);
      if (stateOf[id] === 2) counts.duplicated++;
      else if (stateOf[id] !== 1) counts.unknownFinal++;
      else {
        stateOf[id] = 2;
        outstanding--;
        if (r.type === "done") counts.done++;
        else counts.failed[r.code!] = (counts.failed[r.code!] ?? 0) + 1;
      }
      return;
    }
    case "progress":
      return; // retry notices: neither an immediate nor a final reply
    default:
      counts.immediate++;
  }
}

// --- the flood ----------------------------------------------------------------------------------
let sending = true;
const payload = (n: number) => Array.from({ length: n }, (_, i) => `m${i}`).join("\n") + "\n";
const chunk = enc.encode(payload(burst));
const conns = await Promise.all(
  Array.from({ length: connCount }, () => Deno.connect({ hostname: "127.0.0.1", port })),
);
const readers = conns.map((c) => readLines(c, onReply));
const writers = conns.map(async (c) => {
  try {
    while (sending) {
      for (let at = 0; at < chunk.length;) at += await c.write(chunk.subarray(at));
      counts.requests += burst;
      await new Promise((r) => setTimeout(r, 1));
    }
  } catch (e) {
    console.error(`a flood connection broke: ${(e as Error).message}`);
  }
});

// --- the prober: /ping from a fresh connection every 100 ms, in its own thread ------------------
const pings: number[] = [];
let pingFailures = 0;
const probe = new Worker(new URL("./ping_probe.ts", import.meta.url), { workerData: { port } });
probe.on("message", (ms: number) => (ms < 0 ? pingFailures++ : pings.push(ms)));

// --- memory -------------------------------------------------------------------------------------
function rssKiB(field: "VmRSS" | "VmHWM"): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${server.pid}/status`);
    return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}
let peakRss = 0;
const t0 = performance.now();
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, rssKiB("VmRSS"));
  if (progress) {
    const s = Math.round((performance.now() - t0) / 1000);
    Deno.stderr.writeSync(enc.encode(
      `\r${s}s: ${counts.requests} sent, ${counts.accepted} accepted, ${counts.done} done, ${outstanding} outstanding, RSS ${
        Math.round(peakRss / 1024)
      } MiB   `,
    ));
  }
}, 500);

await new Promise((r) => setTimeout(r, durationMs));
sending = false;
await probe.terminate();
await Promise.all(writers);

// --- drain: every accepted task's final reply, and every request's immediate one ------------------
const drainDeadline = Date.now() + 60_000;
while ((outstanding > 0 || counts.immediate < counts.requests) && Date.now() < drainDeadline) {
  await new Promise((r) => setTimeout(r, 50));
}
clearInterval(sampler);
if (progress) Deno.stderr.writeSync(enc.encode("\n"));
const hwm = rssKiB("VmHWM");
for (const c of conns) c.close();
await Promise.all(readers);
server.kill("SIGTERM");
const status = await server.status;
await serverLog;

// --- report -------------------------------------------------------------------------------------
pings.sort((a, b) => a - b);
const pct = (p: number) => pings.length ? pings[Math.min(pings.length - 1, Math.floor(p * pings.length))] : NaN;
const failedTotal = Object.values(counts.failed).reduce((a, b) => a + b, 0);
const report = {
  duration_s: durationMs / 1000,
  connections: connCount,
  requests: counts.requests,
  accepted: counts.accepted,
  refused: counts.refused,
  done: counts.done,
  failed: counts.failed,
  lost: outstanding,
  missing_immediate_replies: counts.requests - counts.immediate,
  duplicated: counts.duplicated,
  unknown_finals: counts.unknownFinal,
  faults_injected: faults,
  peak_rss_mib: Math.round(Math.max(peakRss, hwm) / 1024),
  ping_ms: {
    count: pings.length,
    failed: pingFailures,
    p50: +pct(0.5).toFixed(1),
    p99: +pct(0.99).toFixed(1),
    max: +pct(1).toFixed(1),
  },
  server_exit: status.code,
};
const ok = report.lost === 0 && report.duplicated === 0 && report.missing_immediate_replies === 0 &&
  report.unknown_finals === 0 && status.code === 0 && pingFailures === 0;
if (args.json) {
  console.log(JSON.stringify({ ...report, ok }));
} else {
  console.log(`soak: ${report.duration_s}s, ${connCount} connections flooding, chaos handler (throws, hangs, crashes)
  requests      ${report.requests}
  accepted      ${report.accepted}
  refused       ${Object.entries(report.refused).map(([k, v]) => `${v} ${k}`).join(", ") || 0}
  done          ${report.done}
  failed        ${failedTotal} (${Object.entries(report.failed).map(([k, v]) => `${v} ${k}`).join(", ")})
  lost          ${report.lost}
  duplicated    ${report.duplicated}
  no reply      ${report.missing_immediate_replies}
  faults        ${faults.crashed} worker crashes, ${faults.killed} blocked workers killed, ${faults.retried} retries
  peak RSS      ${report.peak_rss_mib} MiB
  /ping         ${report.ping_ms.count} probes from fresh connections: p50 ${report.ping_ms.p50} ms, p99 ${report.ping_ms.p99} ms, max ${report.ping_ms.max} ms, ${pingFailures} failed
  server exit   ${status.code}
${ok ? "OK: nothing lost, nothing duplicated" : "FAILED: see above"}`);
}
Deno.exit(ok ? 0 : 1);

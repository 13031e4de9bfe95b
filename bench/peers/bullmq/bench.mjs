// The BullMQ side of the peer rows of `deno task bench`, run with Node (as BullMQ's users run it).
// bench/peers/bullmq.ts starts redis-server, then this script twice:
//
//   node bench.mjs worker   --port P --concurrency C
//     one Worker of concurrency C on the queue "bench", echoing each job's data; prints "ready",
//     stops on SIGTERM
//   node bench.mjs producer --port P --conns N --tasks T --window W
//     one Queue and one QueueEvents; N submitters each keep W jobs in flight (Queue.add, then
//     job.waitUntilFinished(queueEvents)) until each has had T results; prints one line of JSON
//     with the counts, the time, its own CPU during the load and the latency percentiles
//
// QueueEvents misses a completion that happens before its first read of the event stream:
// waitUntilFinished checks the job's state once after subscribing (one more Redis call per job).
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

// Loaded through require so that Deno's type check of bench/ (which does not know this
// directory's node_modules) leaves it alone.
const { Queue, QueueEvents, Worker } = createRequire(import.meta.url)("bullmq");

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: "string" },
    concurrency: { type: "string", default: "20" },
    conns: { type: "string", default: "50" },
    tasks: { type: "string", default: "1000" },
    window: { type: "string", default: "20" },
  },
});
const connection = { host: "127.0.0.1", port: Number(values.port) };
const QUEUE = "bench";
// Completed jobs are kept up to a count, as BullMQ's docs advise (the default keeps them all).
const jobOptions = { removeOnComplete: { count: 10_000 }, removeOnFail: { count: 10_000 } };

if (positionals[0] === "worker") {
  const worker = new Worker(QUEUE, (job) => Promise.resolve(job.data), {
    connection,
    concurrency: Number(values.concurrency),
  });
  worker.on("error", (e) => console.error(`worker error: ${e.message}`));
  await worker.waitUntilReady();
  console.log("ready");
  process.on("SIGTERM", async () => {
    await worker.close(true);
    process.exit(0);
  });
} else if (positionals[0] === "producer") {
  const conns = Number(values.conns), tasks = Number(values.tasks), window = Number(values.window);
  // The event stream is trimmed to 10,000 events by default: ~3 events a job, and a QueueEvents
  // reader a few thousand jobs behind (as it gets under this load) misses completions, whose
  // waitUntilFinished then waits out its 30 s. A user at this rate raises it, as here.
  const queue = new Queue(QUEUE, { connection, streams: { events: { maxLen: 200_000 } } });
  const events = new QueueEvents(QUEUE, { connection });
  await queue.waitUntilReady();
  await events.waitUntilReady();
  const latencies = [];
  let done = 0, failed = 0, missed = 0;
  let firstError;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let last = t0;
  const submitter = async (i) => {
    let sent = 0;
    const lane = async () => {
      while (sent < tasks) {
        sent++;
        const at = performance.now();
        try {
          const job = await queue.add("echo", { x: "x", from: i }, jobOptions);
          try {
            await job.waitUntilFinished(events, 2_000);
            done++;
          } catch (e) {
            // No completion event within 2 s: QueueEvents may have missed it (on this machine, a few
            // dozen of 30,000 in some runs). Ask the job itself, as a user's fallback would.
            const state = await job.getState();
            if (state === "completed") {
              done++;
              missed++;
            } else {
              failed++;
              firstError ??= `${e instanceof Error ? e.message : String(e)}; the job is ${state}`;
            }
          }
        } catch (e) {
          failed++;
          firstError ??= e instanceof Error ? e.message : String(e);
        }
        last = performance.now();
        latencies.push(last - at);
      }
    };
    await Promise.all(Array.from({ length: Math.min(window, tasks) }, lane));
  };
  await Promise.all(Array.from({ length: conns }, (_, i) => submitter(i)));
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : 0;
  console.log(JSON.stringify({
    done,
    failed,
    missed,
    first_error: firstError,
    elapsed_ms: last - t0,
    cpu_us: cpu.user + cpu.system,
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
  }));
  await events.close();
  await queue.close();
  process.exit(0);
} else {
  console.error("usage: node bench.mjs worker|producer --port P [...]");
  process.exit(2);
}

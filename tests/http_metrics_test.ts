/**
 * `/metrics` against the text exposition format: a strict line grammar of our own, the
 * `parse-prometheus-text-format` parser from npm, and `promtool check metrics` (Debian's
 * `prometheus` package) where it is installed. And the measurements of `server/metrics.ts`:
 * fixed buckets, cumulative counts, quantiles, the ring of the last failures.
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { ExpositionWriter } from "../server/http/exposition.ts";
import { Histogram, Metrics, quantile, RECENT_FAILURES, TASK_SECONDS_BUCKETS } from "../server/metrics.ts";
import type { Snapshot } from "../server/http/live.ts";
import type { TaskServer } from "../server/mod.ts";
import { FIXTURE_HANDLERS, LineClient, startServer } from "./helpers.ts";

/** Whether promtool runs here (spawning a program that is not installed throws at once, not in the promise). */
async function hasPromtool(): Promise<boolean> {
  try {
    return (await new Deno.Command("promtool", { args: ["--version"], stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}
const promtool = await hasPromtool();

async function scrape(server: TaskServer): Promise<{ type: string | null; text: string }> {
  const r = await fetch(`http://127.0.0.1:${server.httpAddr!.port}/metrics`);
  return { type: r.headers.get("content-type"), text: await r.text() };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Reads the text format strictly: every line a `# HELP`, a `# TYPE` or a sample; a family's
 * HELP and TYPE once each, before its samples; its samples together; label values escaped; names
 * and label names as the format allows. Throws on the first fault.
 */
function strictParse(text: string): { types: Map<string, string>; samples: Sample[] } {
  assert.ok(text.endsWith("\n"), "the text ends with a line break");
  const name = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const sample = new RegExp(`^(${name})(?:\\{(.*)\\})? (\\S+)$`);
  const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/;
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const closed = new Set<string>();
  let current: string | undefined;
  const samples: Sample[] = [];
  const familyOf = (n: string) => {
    for (const suffix of ["_bucket", "_sum", "_count", ""]) {
      const base = suffix ? n.slice(0, -suffix.length) : n;
      if (n.endsWith(suffix) && types.has(base) && (suffix === "" || types.get(base) === "histogram")) return base;
    }
    throw new Error(`sample ${n} has no # TYPE before it`);
  };
  for (const line of text.slice(0, -1).split("\n")) {
    const meta = new RegExp(`^# (HELP|TYPE) (${name}) (.*)$`).exec(line);
    if (meta) {
      const [, kind, n, rest] = meta;
      if (n !== current) {
        if (current) closed.add(current);
        assert.ok(!closed.has(n), `family ${n} comes twice`);
        current = n;
      }
      if (kind === "HELP") {
        assert.ok(!helps.has(n), `two HELP lines for ${n}`);
        assert.ok(rest.length > 0, `empty HELP for ${n}`);
        helps.add(n);
      } else {
        assert.ok(!types.has(n), `two TYPE lines for ${n}`);
        assert.match(rest, /^(counter|gauge|histogram|summary|untyped)$/);
        types.set(n, rest);
      }
      continue;
    }
    const m = sample.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const family = familyOf(m[1]);
    assert.equal(family, current, `sample ${m[1]} is away from its family ${family}`);
    const labels: Record<string, string> = {};
    let rest = m[2] ?? "";
    while (rest.length > 0) {
      const l = label.exec(rest);
      assert.ok(l, `bad labels in ${JSON.stringify(line)}`);
      assert.ok(!(l[1] in labels), `label ${l[1]} twice in ${line}`);
      labels[l[1]] = l[2].replace(/\\(.)/g, (_m, c: string) => c === "n" ? "\n" : c);
      rest = rest.slice(l[0].length);
    }
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(value) || m[3] === "NaN", `bad value in ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  for (const [n, type] of types) {
    assert.ok(helps.has(n), `no HELP for ${n}`);
    if (type === "counter") assert.match(n, /_total$/, `counter ${n} ends in _total`);
    else assert.doesNotMatch(n, /_total$/, `${type} ${n} does not end in _total`);
  }
  return { types, samples };
}

/** The value of one sample. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) =>
    s.name === name && Object.keys(labels).length === Object.keys(s.labels).length &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )?.value;
}

/** Runs tasks of every outcome over TCP: 3 echo done, 1 fail failed, 1 refused. */
async function runSomeTasks(server: TaskServer): Promise<void> {
  const c = await LineClient.connect(server.addr.port);
  await c.send("/task echo a", "/task echo b", "/task echo c", "/task fail boom", "/task nope x");
  const lines = await c.take(9);
  assert.equal(lines.filter((l) => l.startsWith("DONE")).length, 3, lines.join("\n"));
  assert.equal(lines.filter((l) => l.startsWith("FAILED")).length, 1);
  await c.close();
}

Deno.test("metrics: /metrics follows the text format, and its numbers are the server's", async () => {
  const server = await startServer({ http: "127.0.0.1:0", workers: 2, modules: [FIXTURE_HANDLERS] });
  try {
    await runSomeTasks(server);
    const { type, text } = await scrape(server);
    assert.equal(type, "text/plain; version=0.0.4; charset=utf-8");
    const { types, samples } = strictParse(text);
    const stats = server.stats();
    assert.equal(types.get("asynctask_tasks_total"), "counter");
    assert.equal(value(samples, "asynctask_tasks_total", { task: "echo", outcome: "done" }), 3);
    assert.equal(value(samples, "asynctask_tasks_total", { task: "fail", outcome: "failed" }), 1);
    assert.equal(
      value(samples, "asynctask_tasks_total", { task: "sleep", outcome: "done" }),
      0,
      "declared tasks show 0",
    );
    assert.equal(value(samples, "asynctask_tasks_accepted_total", { task: "echo" }), 3);
    assert.equal(value(samples, "asynctask_requests_refused_total"), stats.refused);
    assert.equal(value(samples, "asynctask_queue_depth"), 0);
    assert.equal(types.get("asynctask_queue_depth"), "gauge");
    assert.equal(value(samples, "asynctask_tasks_running"), 0);
    assert.equal(value(samples, "asynctask_workers"), 2);
    assert.equal(
      (value(samples, "asynctask_worker_runs_total", { worker: "1", outcome: "done" }) ?? 0) +
        (value(samples, "asynctask_worker_runs_total", { worker: "2", outcome: "done" }) ?? 0),
      3,
    );
    assert.equal(value(samples, "asynctask_connections_accepted_total"), stats.connections_total);
    assert.equal(value(samples, "asynctask_worker_restarts_total", { reason: "unclassified" }), 0);
    assert.equal(value(samples, "asynctask_ready"), 1);
    assert.equal(value(samples, "asynctask_build_info", { version: "0.1.0", deno: Deno.version.deno }), 1);
    // The process.
    const rss = value(samples, "process_resident_memory_bytes")!;
    assert.ok(rss > 10 * 1024 * 1024 && rss < 4 * 1024 ** 3, `resident memory ${rss}`);
    assert.ok(value(samples, "process_cpu_seconds_total")! > 0);
    assert.ok(Math.abs(value(samples, "process_start_time_seconds")! - performance.timeOrigin / 1000) < 2);
    if (Deno.build.os === "linux") {
      const fds = [...Deno.readDirSync("/proc/self/fd")].length - 1;
      assert.ok(
        Math.abs(value(samples, "process_open_fds")! - fds) <= 3,
        `open fds ${value(samples, "process_open_fds")} vs ${fds}`,
      );
      assert.ok(value(samples, "process_max_fds")! >= fds);
    }
    // The lifecycle reports run times: a histogram by task; without a journal, no commit times.
    assert.equal(types.get("asynctask_task_duration_seconds"), "histogram");
    assert.equal(types.has("asynctask_journal_commit_seconds"), false, "no journal");

    // The npm parser reads the same. (It ships no types; this is the shape its README gives.)
    const families: { name: string; type: string; metrics: { value?: string; labels?: Record<string, string> }[] }[] =
      parsePrometheus(text);
    const total = families.find((f) => f.name === "asynctask_tasks_total");
    assert.equal(total?.type, "COUNTER");
    assert.ok(total?.metrics.some((m) => m.labels?.task === "echo" && m.labels?.outcome === "done" && m.value === "3"));
    assert.equal(families.length, types.size, "the same families");
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("metrics: what the lifecycle reports shows as histograms by task, failure codes, restart reasons, commit times", async () => {
  const server = await startServer({ http: "127.0.0.1:0", workers: 1 });
  try {
    // As the lifecycle, the pool and the journal report them (see server/metrics.ts).
    const m = server.metrics;
    m.taskStarted("echo", 3);
    m.taskEnded("echo", "done", 12);
    m.taskStarted("echo", 0);
    m.taskEnded("echo", "done", 700);
    m.taskEnded("echo", "timeout", -1);
    m.taskFailed(3, "echo", "timeout", 'ran "too" long\nreally');
    m.workerRestarted("crashed");
    m.journalCommit(0.0004);
    const { text } = await scrape(server);
    const { types, samples } = strictParse(text);
    assert.equal(types.get("asynctask_task_duration_seconds"), "histogram");
    assert.equal(types.get("asynctask_task_wait_seconds"), "histogram");
    const bucket = (le: string) => value(samples, "asynctask_task_duration_seconds_bucket", { task: "echo", le });
    assert.equal(bucket("0.01"), 0);
    assert.equal(bucket("0.025"), 1);
    assert.equal(bucket("0.5"), 1);
    assert.equal(bucket("1"), 2);
    assert.equal(bucket("+Inf"), 2);
    assert.equal(
      value(samples, "asynctask_task_duration_seconds_count", { task: "echo" }),
      2,
      "a task that never ran is not timed",
    );
    assert.equal(value(samples, "asynctask_task_duration_seconds_sum", { task: "echo" }), 0.712);
    assert.equal(value(samples, "asynctask_task_wait_seconds_count", { task: "echo" }), 2);
    assert.equal(value(samples, "asynctask_task_failures_total", { task: "echo", code: "timeout" }), 1);
    assert.equal(value(samples, "asynctask_worker_restarts_total", { reason: "crashed" }), 1);
    assert.equal(value(samples, "asynctask_worker_restarts_total", { reason: "unclassified" }), undefined);
    assert.equal(value(samples, "asynctask_journal_commit_seconds_bucket", { le: "0.0005" }), 1);
    // Buckets are cumulative and end with +Inf = count, for every histogram.
    for (const [family, type] of types) {
      if (type !== "histogram") continue;
      const series = new Map<string, Sample[]>();
      for (const s of samples.filter((s) => s.name === `${family}_bucket`)) {
        const { le: _le, ...rest } = s.labels;
        const key = JSON.stringify(rest);
        series.set(key, [...(series.get(key) ?? []), s]);
      }
      for (const [key, buckets] of series) {
        for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value);
        assert.equal(buckets.at(-1)!.labels.le, "+Inf");
        assert.equal(buckets.at(-1)!.value, value(samples, `${family}_count`, JSON.parse(key)));
      }
    }
    // The dashboard's snapshot (taken once a second) has the failure, as it was.
    let snap: Snapshot | undefined;
    for (let i = 0; i < 30 && !snap?.failures.length; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      snap = await (await fetch(`http://127.0.0.1:${server.httpAddr!.port}/api/snapshot`)).json();
    }
    assert.equal(snap?.detailed, true);
    assert.deepEqual(snap?.failures.map((f) => [f.id, f.task, f.code, f.message]), [
      [3, "echo", "timeout", 'ran "too" long\nreally'],
    ]);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("metrics: a journaled server shows its commit-time histogram from the start", async () => {
  const dir = await Deno.makeTempDir();
  const server = await startServer({ http: "127.0.0.1:0", workers: 1, journal: `${dir}/j.db` });
  try {
    const { text } = await scrape(server);
    const { types, samples } = strictParse(text);
    assert.equal(types.get("asynctask_journal_commit_seconds"), "histogram");
    assert.equal(value(samples, "asynctask_journal_commit_seconds_count"), 0);
    // Ready once the workers have loaded their handlers (a moment after the start).
    let ready = await fetch(`http://127.0.0.1:${server.httpAddr!.port}/readyz`);
    for (let i = 0; i < 100 && ready.status !== 200; i++) {
      await ready.body?.cancel();
      await new Promise((r) => setTimeout(r, 50));
      ready = await fetch(`http://127.0.0.1:${server.httpAddr!.port}/readyz`);
    }
    assert.equal(ready.status, 200);
    assert.equal((await ready.json()).checks.store.detail, "the journal's last commit is on disk");
  } finally {
    await server.shutdown(5000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: `metrics: promtool check metrics finds no problem${
    promtool ? "" : " — SKIPPED: promtool is not installed (Debian's prometheus package has it)"
  }`,
  ignore: !promtool,
  fn: async () => {
    const server = await startServer({ http: "127.0.0.1:0", workers: 2, modules: [FIXTURE_HANDLERS] });
    try {
      await runSomeTasks(server);
      server.metrics.taskStarted("echo", 1);
      server.metrics.taskEnded("echo", "done", 5);
      server.metrics.workerRestarted("recycled");
      server.metrics.journalCommit(0.001);
      const { text } = await scrape(server);
      const child = new Deno.Command("promtool", {
        args: ["check", "metrics"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(text));
      await w.close();
      const out = await child.output();
      const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, said);
      assert.equal(said.trim(), "", "no lint remark either");
      // And it does find a fault: the check can fail.
      const bad = new Deno.Command("promtool", {
        args: ["check", "metrics"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      })
        .spawn();
      const bw = bad.stdin.getWriter();
      await bw.write(new TextEncoder().encode("# TYPE requests counter\nrequests 1\n"));
      await bw.close();
      const badOut = await bad.output();
      assert.notEqual(badOut.code, 0);
      assert.match(new TextDecoder().decode(badOut.stderr), /should have "_total" suffix/);
    } finally {
      await server.shutdown(5000);
    }
  },
});

Deno.test("metrics: histograms count into fixed buckets; quantiles interpolate; the failure ring keeps the last ones", () => {
  const h = new Histogram(TASK_SECONDS_BUCKETS);
  for (let i = 0; i < 100; i++) h.observe(0.02); // 20 ms, in the (0.01, 0.025] bucket
  h.observe(400); // past the last bound: +Inf
  assert.equal(h.count, 101);
  assert.equal(h.cumulative().at(-1), 101);
  assert.equal(h.cumulative()[TASK_SECONDS_BUCKETS.indexOf(0.025)], 100);
  const p50 = quantile(0.5, h.bounds, h.counts)!;
  assert.ok(p50 > 0.01 && p50 <= 0.025, `p50 ${p50}`);
  assert.equal(quantile(1, h.bounds, h.counts), 300, "in +Inf: the highest bound");
  // An observation allocates nothing: its cost is a scan of 17 bounds.
  assert.equal(h.counts.length, TASK_SECONDS_BUCKETS.length + 1);

  const m = new Metrics();
  assert.equal(m.observed, false);
  for (let i = 1; i <= RECENT_FAILURES + 5; i++) m.taskFailed(i, "t", "handler_error", `n${i}`);
  const last = m.recentFailures();
  assert.equal(last.length, RECENT_FAILURES);
  assert.equal(last[0].id, RECENT_FAILURES + 5, "newest first");
  assert.equal(last.at(-1)!.id, 6);

  const w = new ExpositionWriter();
  w.family("x_total", "counter", "a\\b\nc");
  w.sample("x_total", { v: 'a"b\\c\nd' }, 1);
  assert.equal(w.text(), '# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\nx_total{v="a\\"b\\\\c\\nd"} 1\n');
  assert.equal(strictParse(w.text()).samples[0].labels.v, 'a"b\\c\nd');
});

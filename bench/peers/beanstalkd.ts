/**
 * The beanstalkd peer rows: the machine's `beanstalkd` (Debian's package), in memory (no binlog),
 * on a free loopback port, with a beanstalkd protocol client written here (the text protocol of
 * beanstalkd's `doc/protocol.txt`: `put`, `reserve`, `delete`, `use`, `watch`, `ignore`).
 *
 * - **Submitters** (in the suite's process, like `asynctask bench`): one connection each, which
 *   `use`s the tube `jobs` and watches its own reply tube `r<i>` only. It puts `window` jobs
 *   (body `r<i> <seq> <payload>`), then keeps one `reserve` outstanding; each result it reserves is
 *   answered with `delete`, the next `put` and the next `reserve` in one write.
 * - **Workers** (`deno run -A bench/peers/beanstalkd.ts worker --port P --conns N`, one process, N
 *   connections, like asynctask's 4 worker threads): each watches `jobs`; each job it reserves is
 *   answered with `use r<i>`, `put <seq> <payload>` (the echo), `delete` and the next `reserve` in
 *   one write.
 *
 * That is 7 commands per task (3 from the submitter, 4 from the worker). CPU counts beanstalkd and
 * the worker process (the peer's server side), not the submitters, as the asynctask rows count
 * the server and not the load generator.
 *
 * ```sh
 * deno run -A bench/peers/beanstalkd.ts --conns 50 --tasks 2000 --window 20
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Histogram } from "../histogram.ts";
import { cpuUs, type PeerLoad, type PeerOutcome, reason, startChild, which } from "./common.ts";

/** Worker connections in the worker process. */
export const BEANSTALKD_WORKERS = 4;
const SELF = new URL(import.meta.url).pathname;

/**
 * Splits beanstalkd's replies: a line, and for `RESERVED <id> <bytes>` its body. Bodies are
 * ASCII here, so characters are bytes.
 */
class Replies {
  #rest = "";
  constructor(private onReply: (line: string, body: string | undefined) => void) {}

  feed(text: string): void {
    const s = this.#rest + text;
    let at = 0;
    while (true) {
      const eol = s.indexOf("\r\n", at);
      if (eol < 0) break;
      const line = s.slice(at, eol);
      if (line.startsWith("RESERVED ")) {
        const end = eol + 2 + Number(line.slice(line.lastIndexOf(" ") + 1));
        if (s.length < end + 2) break;
        this.onReply(line, s.slice(eol + 2, end));
        at = end + 2;
      } else {
        this.onReply(line, undefined);
        at = eol + 2;
      }
    }
    this.#rest = s.slice(at);
  }
}

/** A connection to beanstalkd: ordered writes (one at a time), replies to a callback. */
class Conn {
  #pending = "";
  #writing = false;
  readonly closed: Promise<void>;
  constructor(readonly conn: Deno.TcpConn, onReply: (line: string, body: string | undefined) => void) {
    conn.setNoDelay(true);
    const replies = new Replies(onReply);
    this.closed = (async () => {
      const buf = new Uint8Array(64 * 1024);
      const dec = new TextDecoder();
      try {
        while (true) {
          const n = await conn.read(buf);
          if (n === null) break;
          replies.feed(dec.decode(buf.subarray(0, n)));
        }
      } catch {
        // closed
      }
    })();
  }

  static async open(port: number, onReply: (line: string, body: string | undefined) => void): Promise<Conn> {
    return new Conn(await Deno.connect({ hostname: "127.0.0.1", port }), onReply);
  }

  send(text: string): void {
    this.#pending += text;
    if (!this.#writing) this.#flush();
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    const enc = new TextEncoder();
    try {
      while (this.#pending) {
        const data = enc.encode(this.#pending);
        this.#pending = "";
        for (let at = 0; at < data.length;) at += await this.conn.write(data.subarray(at));
      }
    } catch {
      // closed: the reader sees it
    } finally {
      this.#writing = false;
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // closed
    }
  }
}

const put = (body: string) => `put 1024 0 60 ${body.length}\r\n${body}\r\n`;

/** The worker process: `conns` connections reserving from `jobs` and putting each echo back. */
async function worker(port: number, conns: number): Promise<void> {
  let ready = 0;
  const all = await Promise.all(Array.from({ length: conns }, async () => {
    let using = "default";
    const c: Conn = await Conn.open(port, (line, body) => {
      if (body !== undefined) {
        const id = line.slice(9, line.indexOf(" ", 9));
        const sp = body.indexOf(" ");
        const tube = body.slice(0, sp);
        const result = body.slice(sp + 1);
        const use = tube === using ? "" : `use ${tube}\r\n`;
        using = tube;
        c.send(`${use}${put(result)}delete ${id}\r\nreserve\r\n`);
      } else if (line === "WATCHING 1") {
        if (++ready === conns) console.log("ready");
      } else if (!/^(INSERTED|DELETED|USING|WATCHING) /.test(line)) {
        console.error(`worker: unexpected reply: ${line}`);
      }
    });
    c.send("watch jobs\r\nignore default\r\nreserve\r\n");
    return c;
  }));
  Deno.addSignalListener("SIGTERM", () => {
    for (const c of all) c.close();
    Deno.exit(0);
  });
  await Promise.all(all.map((c) => c.closed));
}

interface SubmitReport {
  done: number;
  errors: number;
  lost: number;
  elapsedMs: number;
  complete: Histogram;
}

/** The submitters: `load.conns` connections, each with `load.window` jobs in flight. */
async function submit(port: number, load: PeerLoad, deadlineMs = 120_000): Promise<SubmitReport> {
  const complete = new Histogram();
  let done = 0, errors = 0;
  const t0 = performance.now();
  let last = t0;
  const one = async (i: number) => {
    const sentAt = new Float64Array(load.tasks);
    let sent = 0, received = 0, deleting = 0;
    const finished = Promise.withResolvers<void>();
    const next = () => {
      const body = `r${i} ${sent} x`;
      sentAt[sent++] = performance.now();
      return put(body);
    };
    const c = await Conn.open(port, (line, body) => {
      if (body !== undefined) {
        const now = performance.now();
        const seq = Number(body.slice(0, body.indexOf(" ")));
        complete.record((now - sentAt[seq]) * 1000);
        last = now;
        received++;
        done++;
        deleting++;
        let out = `delete ${line.slice(9, line.indexOf(" ", 9))}\r\n`;
        if (sent < load.tasks) out += next();
        if (received < load.tasks) out += "reserve\r\n";
        c.send(out);
      } else if (line === "DELETED") {
        if (--deleting === 0 && received === load.tasks) finished.resolve();
      } else if (!/^(INSERTED|USING|WATCHING) /.test(line)) {
        errors++;
        console.error(`beanstalkd submitter: unexpected reply: ${line}`);
      }
    });
    let out = `use jobs\r\nwatch r${i}\r\nignore default\r\n`;
    for (let k = 0; k < Math.min(load.window, load.tasks); k++) out += next();
    c.send(out + "reserve\r\n");
    const timer = setTimeout(finished.resolve, Math.max(0, t0 + deadlineMs - performance.now()));
    await Promise.race([finished.promise, c.closed]);
    clearTimeout(timer);
    c.close();
    await c.closed;
    return load.tasks - received;
  };
  const lost = (await Promise.all(Array.from({ length: load.conns }, (_, i) => one(i)))).reduce((a, b) => a + b, 0);
  return { done, errors, lost, elapsedMs: Math.max(1, last - t0), complete };
}

/** Runs one beanstalkd row; a row that cannot run comes back skipped, with the reason. */
export async function runBeanstalkd(load: PeerLoad, workerConns = BEANSTALKD_WORKERS): Promise<PeerOutcome> {
  const peer = "beanstalkd";
  const exe = which("beanstalkd");
  if (!exe) return { peer, load, skipped: "beanstalkd not found on PATH (Debian: apt install beanstalkd)" };
  const stops: (() => Promise<void>)[] = [];
  try {
    // -p 0: the kernel picks a free port, and -V prints it ("bind 3 127.0.0.1:<port>").
    const server = await startChild([exe, "-l", "127.0.0.1", "-p", "0", "-V"], /bind \d+ 127\.0\.0\.1:\d+/);
    stops.push(() => server.stop());
    const version = /beanstalkd (\S+)/.exec(new TextDecoder().decode(
      (await new Deno.Command(exe, { args: ["-v"], stdout: "piped", stderr: "null" }).output()).stdout,
    ))?.[1];
    const port = Number(/bind \d+ 127\.0\.0\.1:(\d+)/.exec(server.output())![1]);
    const workers = await startChild(
      [Deno.execPath(), "run", "-A", SELF, "worker", "--port", String(port), "--conns", String(workerConns)],
      /^ready$/m,
    );
    stops.push(() => workers.stop());
    const before = { beanstalkd: cpuUs(server.pid), workers: cpuUs(workers.pid) };
    const r = await submit(port, load);
    const cpu = { beanstalkd: cpuUs(server.pid) - before.beanstalkd, workers: cpuUs(workers.pid) - before.workers };
    const total = cpu.beanstalkd + cpu.workers;
    return {
      peer: version ? `beanstalkd ${version}` : peer,
      load,
      done: r.done,
      failed: r.errors,
      lost: r.lost,
      elapsedMs: r.elapsedMs,
      tasksPerSec: (r.done / r.elapsedMs) * 1000,
      cpuUs: cpu,
      cpuUsPerTask: total / Math.max(1, r.done),
      p50Ms: r.complete.percentile(0.5) / 1000,
      p99Ms: r.complete.percentile(0.99) / 1000,
      extra: { worker_connections: workerConns, commands_per_task: 7 },
    };
  } catch (e) {
    return { peer, load, skipped: reason(e) };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}

if (import.meta.main) {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      port: { type: "string" },
      conns: { type: "string" },
      tasks: { type: "string", default: "2000" },
      window: { type: "string", default: "20" },
      workers: { type: "string", default: String(BEANSTALKD_WORKERS) },
    },
  });
  if (positionals[0] === "worker") {
    await worker(Number(values.port), Number(values.conns ?? BEANSTALKD_WORKERS));
  } else {
    const r = await runBeanstalkd({
      conns: Number(values.conns ?? 50),
      tasks: Number(values.tasks),
      window: Number(values.window),
    }, Number(values.workers));
    console.log(JSON.stringify(r, (_k, v) => v instanceof Histogram ? undefined : v, 2));
  }
}

/**
 * `deno task redteam`: the red-team suite. Each finding of the hardening review is an experiment
 * against a real `asynctask serve` — a child process started here, on a free loopback port, with
 * the flags the finding needs — and the suite prints what was done, what was expected, what was
 * observed, and PASS or FAIL, as a Markdown table (or JSON). docs/security.md describes it.
 *
 * ```sh
 * ./deno task redteam                 # every finding, about two minutes
 * ./deno task redteam --quick         # shorter runs (the form tests/redteam_test.ts uses)
 * ./deno task redteam --only 4,5      # some findings
 * ./deno task redteam --json          # the rows as JSON instead of the table
 * ```
 *
 * All traffic goes to 127.0.0.1. Every experiment is bounded in count and time, stops by itself,
 * and kills what it started; a server that lets memory grow is killed past a safety ceiling.
 * The exit code is 1 when a finding FAILs.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** The repository root. */
export const ROOT: string = new URL("../", import.meta.url).pathname;
/** The red-team handler module (`bigint`, `cyclic`, `bytes`, `hog`). */
export const REDTEAM_HANDLERS: string = `${ROOT}tests/fixtures/redteam_handlers.ts`;
/** The tests' handler module (its `crash` handler kills its worker). */
export const TEST_HANDLERS: string = `${ROOT}tests/fixtures/handlers.ts`;

const MiB = 1024 * 1024;
const encoder = new TextEncoder();

/** PASS, FAIL, or SKIP (a tool the experiment needs is missing). */
export type Verdict = "PASS" | "FAIL" | "SKIP";

/** One observation of an experiment: a row of the table. */
export interface Check {
  /** `2a`, `4b`, …: the finding's number and a letter. */
  id: string;
  /** What the experiment did. */
  did: string;
  expected: string;
  observed: string;
  verdict: Verdict;
}

/** A row of the report. */
export interface Row extends Check {
  finding: number;
  title: string;
  /** How long the whole finding's experiment took. */
  ms: number;
}

/** How an experiment runs: `quick` is the short form of the test suite (seconds each). */
export interface RunOptions {
  quick: boolean;
}

/** A finding of the review and its experiment. */
export interface Finding {
  n: number;
  title: string;
  /** Tools without which the whole experiment is skipped. */
  needs: Tool[];
  /** The most the experiment may take; past it, it is stopped and reported FAIL. */
  budgetMs: number;
  run(lab: Lab, opts: RunOptions): Promise<void>;
}

/** Programs some experiments need. */
export type Tool = "python3" | "openssl";

// --- small helpers ------------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `ok` every `stepMs` until it holds (true) or `timeoutMs` has passed (false). */
async function until(ok: () => boolean, timeoutMs: number, stepMs = 20): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > deadline) return false;
    await sleep(stepMs);
  }
  return true;
}

function ms(t0: number): number {
  return Math.round(performance.now() - t0);
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** At most `n` characters of `text`, on one line. */
function clip(text: string, n = 160): string {
  const one = text.replace(/\s+/g, " ").trim();
  return one.length > n ? `${one.slice(0, n)}…` : one;
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
}

const toolCache = new Map<Tool, Promise<boolean>>();

/** Whether `tool` runs on this machine. */
export function have(tool: Tool): Promise<boolean> {
  let found = toolCache.get(tool);
  if (!found) {
    const args = tool === "python3" ? ["-c", "print(1)"] : ["version"];
    found = (async () => {
      try {
        return (await new Deno.Command(tool, { args, stdout: "null", stderr: "null" }).output()).success;
      } catch {
        return false; // not installed: spawning it throws at once, not in the promise
      }
    })();
    toolCache.set(tool, found);
  }
  return found;
}

/** The tools `finding` needs that this machine lacks. */
export async function missingTools(finding: Finding): Promise<Tool[]> {
  const missing: Tool[] = [];
  for (const tool of finding.needs) if (!(await have(tool))) missing.push(tool);
  return missing;
}

/** The live (not zombie) processes whose command line holds `marker`: pid → command line. */
function processesWith(marker: string): Map<number, string> {
  const found = new Map<number, string>();
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
      if (!cmdline.includes(marker)) continue;
      if (/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`))) continue;
      found.set(pid, cmdline);
    } catch {
      // gone while we looked
    }
  }
  return found;
}

/** Resident memory of process `pid` in MiB (0 when it is gone). */
function rssMiBOf(pid: number): number {
  try {
    const kib = Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? 0);
    return Math.round(kib / 1024);
  } catch {
    return 0;
  }
}

// --- a server process ---------------------------------------------------------------------------

/** A `serve` child process. */
export class Server {
  readonly #child: Deno.ChildProcess;
  readonly #drained: Promise<void>;
  #log = "";
  #exit: Deno.CommandStatus | undefined;
  readonly status: Promise<Deno.CommandStatus>;
  readonly startedAt = performance.now();
  port = 0;

  constructor(child: Deno.ChildProcess, onOutput: () => void) {
    this.#child = child;
    const drain = async (stream: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of stream) {
        // Kept whole up to 8 MB: enough for every log an experiment reads.
        if (this.#log.length < 8_000_000) this.#log += dec.decode(chunk, { stream: true });
        onOutput();
      }
    };
    this.#drained = Promise.all([drain(child.stdout), drain(child.stderr)]).then(() => {});
    this.status = child.status.then((s) => (this.#exit = s));
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Everything it printed so far. */
  log(): string {
    return this.#log;
  }

  get alive(): boolean {
    return this.#exit === undefined;
  }

  get exit(): Deno.CommandStatus | undefined {
    return this.#exit;
  }

  rssMiB(): number {
    return this.alive ? rssMiBOf(this.pid) : 0;
  }

  /** Its open file descriptors (-1 once it is gone). */
  fds(): number {
    try {
      let n = 0;
      for (const _ of Deno.readDirSync(`/proc/${this.pid}/fd`)) n++;
      return n;
    } catch {
      return -1;
    }
  }

  signal(sig: Deno.Signal): void {
    try {
      this.#child.kill(sig);
    } catch {
      // exited already
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit status once its output is read. */
  async stop(graceMs = 10_000): Promise<Deno.CommandStatus> {
    if (this.alive) this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    try {
      return await this.exited();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves when it has exited and its output is read. */
  async exited(): Promise<Deno.CommandStatus> {
    const status = await this.status;
    await this.#drained;
    return status;
  }
}

// --- a line connection --------------------------------------------------------------------------

/** How much of each reply line is kept: the rest is counted, not stored. */
const KEEP = 4096;

/**
 * A connection that sorts the server's reply lines: immediate replies (in order), and final
 * replies (`DONE`, `FAILED`) by task id; `PROGRESS` is dropped. Each line keeps its first 4 KiB,
 * so that a 200 MB reply costs this process nothing. Every wait has a timeout and resolves with
 * `undefined` rather than throwing.
 */
export class Line {
  readonly immediates: string[] = [];
  readonly finals = new Map<number, string>();
  /** The full length in bytes of each final reply. */
  readonly finalBytes = new Map<number, number>();
  finalCount = 0;
  eof = false;
  eofAt = 0;
  #taken = 0;
  #waiters: (() => void)[] = [];
  readonly #loop: Promise<void>;
  readonly #cur = new Uint8Array(KEEP);
  #curLen = 0;
  #curTotal = 0;

  constructor(readonly conn: Deno.Conn) {
    this.#loop = this.#read();
  }

  /** Sends lines, each with `\n`, in one write; false when the connection is gone. */
  send(...lines: string[]): Promise<boolean> {
    return this.sendRaw(encoder.encode(lines.map((l) => l + "\n").join("")));
  }

  /** Sends bytes as they are; false when the connection is gone. */
  async sendRaw(bytes: Uint8Array): Promise<boolean> {
    try {
      for (let at = 0; at < bytes.length;) at += await this.conn.write(bytes.subarray(at));
      return true;
    } catch {
      return false;
    }
  }

  /** The next immediate reply not yet taken, or undefined (closed, or none within `timeoutMs`). */
  async next(timeoutMs = 5000): Promise<string | undefined> {
    await this.#wait(() => this.immediates.length > this.#taken || this.eof, timeoutMs);
    return this.immediates.length > this.#taken ? this.immediates[this.#taken++] : undefined;
  }

  /** Sends `line` and returns its immediate reply. */
  async request(line: string, timeoutMs = 5000): Promise<string | undefined> {
    if (!(await this.send(line))) return undefined;
    return this.next(timeoutMs);
  }

  /** The final reply of task `id`, or undefined. */
  async final(id: number, timeoutMs = 10_000): Promise<string | undefined> {
    await this.#wait(() => this.finals.has(id) || this.eof, timeoutMs);
    return this.finals.get(id);
  }

  /** Waits until `n` final replies have come; false on timeout or close. */
  finalsAtLeast(n: number, timeoutMs: number): Promise<boolean> {
    return this.#wait(() => this.finalCount >= n || this.eof, timeoutMs).then(() => this.finalCount >= n);
  }

  /** Whether the server closed the connection within `timeoutMs`. */
  async closed(timeoutMs: number): Promise<boolean> {
    await this.#wait(() => this.eof, timeoutMs);
    return this.eof;
  }

  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // closed already
    }
    await this.#loop;
  }

  async #wait(ok: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!ok()) {
      const left = deadline - performance.now();
      if (left <= 0) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        let at = 0;
        while (at < n) {
          const nl = buf.subarray(at, n).indexOf(10);
          const end = nl === -1 ? n : at + nl;
          this.#keep(buf.subarray(at, end));
          if (nl === -1) break;
          this.#endLine();
          at = end + 1;
        }
      }
    } catch {
      // reset, or closed by us
    }
    if (this.#curTotal > 0) this.#endLine();
    this.eof = true;
    this.eofAt = performance.now();
    this.#wake();
  }

  #keep(piece: Uint8Array): void {
    const room = KEEP - this.#curLen;
    if (room > 0) {
      const part = piece.subarray(0, room);
      this.#cur.set(part, this.#curLen);
      this.#curLen += part.length;
    }
    this.#curTotal += piece.length;
  }

  #endLine(): void {
    let text = new TextDecoder().decode(this.#cur.subarray(0, this.#curLen));
    if (text.endsWith("\r")) text = text.slice(0, -1);
    const bytes = this.#curTotal;
    if (bytes > KEEP) text += ` …(${bytes} bytes in all)`;
    this.#curLen = 0;
    this.#curTotal = 0;
    const final = /^(DONE|FAILED) (\d+)/.exec(text) ??
      /^\{"type":"(done|failed)".*?"task_id":(\d+)/.exec(text);
    if (final) {
      const id = Number(final[2]);
      this.finals.set(id, text);
      this.finalBytes.set(id, bytes);
      this.finalCount++;
    } else if (!/^PROGRESS /.test(text) && !/^\{"type":"progress"/.test(text)) {
      this.immediates.push(text);
    }
    this.#wake();
  }
}

/** The task id of an `ACCEPTED <id> …` reply, or undefined. */
function acceptedId(reply: string | undefined): number | undefined {
  const m = /^ACCEPTED (\d+)/.exec(reply ?? "");
  return m ? Number(m[1]) : undefined;
}

// --- the lab: what one experiment starts, and its results ---------------------------------------

/** The result of starting a server that may refuse to start. */
export type Started = { server: Server } | { failed: string; code: number | undefined };

/**
 * One experiment's workspace: the servers, connections, temporary directories and background
 * loops it starts (all ended by {@linkcode Lab.close}), and the checks it records.
 */
export class Lab {
  readonly checks: Check[] = [];
  readonly #servers: Server[] = [];
  readonly #lines = new Set<Line>();
  readonly #raw = new Set<Deno.Conn>();
  readonly #dirs: string[] = [];
  readonly #background: Promise<unknown>[] = [];
  #closed = false;

  constructor(readonly finding: number) {}

  get closed(): boolean {
    return this.#closed;
  }

  /** Records a check: PASS when `pass`, else FAIL. */
  check(id: string, did: string, expected: string, observed: string, pass: boolean): void {
    this.checks.push({ id, did, expected, observed, verdict: pass ? "PASS" : "FAIL" });
  }

  skip(id: string, did: string, expected: string, why: string): void {
    this.checks.push({ id, did, expected, observed: `skipped: ${why}`, verdict: "SKIP" });
  }

  /** Starts `main.ts serve --port 0 … args`, or says why it did not start (within 30 s). */
  async start(args: string[], opts: { env?: Record<string, string> } = {}): Promise<Started> {
    if (this.#closed) throw new Error("the experiment is over");
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}main.ts`, "serve", "--port", "0", "--stats-interval", "0", ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ASYNCTASK_TOKEN: "", ...opts.env }, // a token only where the finding gives one
    }).spawn();
    const listening = Promise.withResolvers<number | undefined>();
    const server: Server = new Server(child, () => {
      const m = /listening on [\d.]+:(\d+)/.exec(server.log());
      if (m) listening.resolve(Number(m[1]));
    });
    this.#servers.push(server);
    server.exited().then(() => listening.resolve(undefined));
    const timer = setTimeout(() => listening.resolve(undefined), 30_000);
    const port = await listening.promise;
    clearTimeout(timer);
    if (port !== undefined) {
      server.port = port;
      return { server };
    }
    const status = await server.stop(2000);
    return { failed: server.log().trim() || "(no output)", code: status.code };
  }

  /** Starts a server that must start. */
  async serve(args: string[], opts: { env?: Record<string, string> } = {}): Promise<Server> {
    const started = await this.start(args, opts);
    if ("server" in started) return started.server;
    throw new Error(`serve ${args.join(" ")} did not start (exit ${started.code}): ${clip(started.failed, 400)}`);
  }

  /** A line connection to `port` (TLS when `ca` is given, trusting that PEM certificate). */
  async connect(port: number, ca?: string): Promise<Line> {
    const conn = ca === undefined
      ? await Deno.connect({ hostname: "127.0.0.1", port })
      : await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [ca] });
    if (this.#closed) {
      conn.close();
      throw new Error("the experiment is over");
    }
    if ("handshake" in conn) await conn.handshake();
    const line = new Line(conn);
    this.#lines.add(line);
    return line;
  }

  /** Closes a line connection now. */
  async hangUp(line: Line): Promise<void> {
    this.#lines.delete(line);
    await line.close();
  }

  /** A bare TCP connection, closed with the experiment. */
  async raw(port: number): Promise<Deno.TcpConn> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    this.#raw.add(conn);
    if (this.#closed) this.#closeRaw(conn);
    return conn;
  }

  #closeRaw(conn: Deno.Conn): void {
    this.#raw.delete(conn);
    try {
      conn.close();
    } catch {
      // closed already
    }
  }

  /** A loop that runs beside the experiment; awaited (after every connection is closed) at the end. */
  background(loop: Promise<unknown>): void {
    this.#background.push(loop.catch(() => {}));
  }

  /** A temporary directory, removed at the end. */
  async tmpDir(): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix: "asynctask-redteam-" });
    this.#dirs.push(dir);
    return dir;
  }

  /** Ends everything the experiment started. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const conn of [...this.#raw]) this.#closeRaw(conn);
    await Promise.all([...this.#lines].map((l) => l.close()));
    this.#lines.clear();
    await Promise.all(this.#servers.map((s) => s.alive ? s.stop(3000) : s.exited()));
    await Promise.all(this.#background);
    for (const dir of this.#dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Self-signed EC certificate for 127.0.0.1 and localhost, made with openssl: the paths and the PEM. */
async function makeCert(dir: string): Promise<{ cert: string; key: string; pem: string }> {
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      // Not a CA: a TLS client refuses a CA certificate as the server's own.
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/cert.pem`,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`openssl req failed: ${new TextDecoder().decode(out.stderr)}`);
  return { cert: `${dir}/cert.pem`, key: `${dir}/key.pem`, pem: await Deno.readTextFile(`${dir}/cert.pem`) };
}

/** Connects (plain or TLS), sends /ping, and says how long the PONG took (undefined: no PONG). */
async function ping(lab: Lab, port: number, ca?: string, timeoutMs = 1000): Promise<{ ms?: number; got: string }> {
  const t0 = performance.now();
  let line: Line;
  try {
    line = await lab.connect(port, ca);
  } catch (e) {
    return { got: `cannot connect: ${messageOf(e)}` };
  }
  try {
    const reply = await line.request("/ping", Math.max(1, timeoutMs - ms(t0)));
    return reply === "PONG" ? { ms: ms(t0), got: reply } : { got: reply ?? (line.eof ? "closed" : "no reply") };
  } finally {
    await lab.hangUp(line);
  }
}

/** Samples `server`'s RSS every `stepMs` until `stop()`; past `ceilingMiB` calls `over` once. */
function watchRss(
  lab: Lab,
  server: Server,
  opts: { ceilingMiB: number; over: (rss: number) => void; stepMs?: number },
): { peak: () => number; end: () => Promise<void> } {
  let peak = server.rssMiB();
  let running = true;
  const loop = (async () => {
    while (running && server.alive) {
      const rss = server.rssMiB();
      peak = Math.max(peak, rss);
      if (rss > opts.ceilingMiB) {
        opts.over(rss);
        break;
      }
      await sleep(opts.stepMs ?? 50);
    }
  })();
  lab.background(loop);
  return {
    peak: () => peak,
    end: async () => {
      running = false;
      await loop;
    },
  };
}

// --- the findings -------------------------------------------------------------------------------

/** The storm: `count` connections reset at once (SO_LINGER 0), in bursts spread over `seconds`. */
const STORM = `
import socket, struct, sys, time
port, seconds, count = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
start, n, burst = time.time(), 0, 50
while n < count and time.time() - start < seconds + 2:
    for _ in range(min(burst, count - n)):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            pass
        s.close()
        n += 1
    time.sleep(seconds * burst / count)
print(n)
`;

const resetStorm: Finding = {
  n: 1,
  title: "Reset storm",
  needs: ["python3"],
  budgetMs: 30_000,
  async run(lab, { quick }) {
    const count = quick ? 500 : 600;
    const seconds = quick ? 2 : 3;
    const did =
      `${count} connections reset at once (SO_LINGER 0, python3) over ${seconds} s; then /ping from a fresh connection`;
    const expected = "PONG within 1 s, right after the storm";
    if (!(await have("python3"))) return lab.skip("1", did, expected, "python3 is not on this machine");
    const server = await lab.serve([]);
    const storm = new Deno.Command("python3", {
      args: ["-c", STORM, String(server.port), String(seconds), String(count)],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const killer = setTimeout(() => storm.kill("SIGKILL"), (seconds + 10) * 1000);
    const out = await storm.output();
    clearTimeout(killer);
    const resets = Number(new TextDecoder().decode(out.stdout).trim()) || 0;
    const p = await ping(lab, server.port, undefined, 5000);
    const alive = server.alive;
    lab.check(
      "1",
      did,
      expected,
      `${resets} resets; /ping → ${p.ms !== undefined ? `PONG in ${p.ms} ms` : p.got}; server ${
        alive ? "alive" : "exited"
      }`,
      resets >= count * 0.9 && p.ms !== undefined && p.ms <= 1000 && alive,
    );
  },
};

const unsendable: Finding = {
  n: 2,
  title: "Results JSON cannot carry; huge numbers",
  needs: [],
  budgetMs: 45_000,
  async run(lab) {
    const dir = await lab.tmpDir();
    const journal = `${dir}/journal.db`;
    const args = ["--module", REDTEAM_HANDLERS, "--journal", journal, "--workers", "2"];
    const server = await lab.serve(args);
    const c = await lab.connect(server.port);
    await c.send("/task bigint x", "/task cyclic x", "/task echo one", "/task echo two", "/task echo three");
    const ids: (number | undefined)[] = [];
    for (let i = 0; i < 5; i++) ids.push(acceptedId(await c.next()));
    const finals: (string | undefined)[] = [];
    for (const id of ids) finals.push(id === undefined ? undefined : await c.final(id, 10_000));
    const [big, cyc, ...echoes] = finals;
    const echoesOk = echoes.every((f, i) => f === `DONE ${ids[i + 2]} ${["one", "two", "three"][i]}`);
    const pong = await c.request("/ping");
    const others = `the 3 echo tasks ${echoesOk ? "DONE" : `not all DONE: ${clip(echoes.join(" | "))}`}; /ping → ${
      pong ?? "nothing"
    }`;
    const handlerError = (f: string | undefined) => /^FAILED \d+ handler_error /.test(f ?? "");
    const cases: [string, string, string, string | undefined][] = [
      ["2a", "bigint", "10n", big],
      ["2b", "cyclic", "a cyclic object", cyc],
    ];
    for (const [id, name, result, final] of cases) {
      lab.check(
        id,
        `--module handler \`${name}\` returns ${result}, beside 3 echo tasks (--journal)`,
        "FAILED <id> handler_error … for that task alone; server alive; other tasks DONE",
        `${clip(final ?? "no final reply", 120)}; ${others}`,
        handlerError(final) && echoesOk && pong === "PONG",
      );
    }
    const huge = await c.request('{"task":"echo","data":1e999999}');
    lab.check(
      "2c",
      '`{"task":"echo","data":1e999999}`',
      "ERROR invalid_data (JSON form)",
      clip(huge ?? "no reply"),
      /"type":"error"/.test(huge ?? "") && /"code":"invalid_data"/.test(huge ?? ""),
    );
    await lab.hangUp(c);
    const first = await server.stop();
    const again = await lab.start(args);
    let observed: string;
    let clean = false;
    if ("server" in again) {
      const c2 = await lab.connect(again.server.port);
      const status = big === undefined ? undefined : await c2.request(`/status ${ids[0]}`);
      const p2 = await c2.request("/ping");
      const complaints = again.server.log().split("\n").filter((l) => /\[(WRN|ERR|FTL)\]/.test(l));
      clean = first.code === 0 && complaints.length === 0 && p2 === "PONG" && /^STATUS \d+ failed/.test(status ?? "");
      observed = `first run exit ${first.code}; restart: ${
        complaints.length ? `${complaints.length} warning/error line(s): ${clip(complaints[0], 120)}` : "no warnings"
      }; /status of the bigint task → ${clip(status ?? "nothing", 80)}; /ping → ${p2 ?? "nothing"}`;
    } else {
      observed = `first run exit ${first.code}; the restart failed (exit ${again.code}): ${clip(again.failed, 200)}`;
    }
    lab.check(
      "2d",
      "SIGTERM after 2a–2c, then serve again on the same --journal",
      "exit 0, a clean restart (no WRN/ERR), /status of the bigint task: failed",
      observed,
      clean,
    );
  },
};

const memory: Finding = {
  n: 3,
  title: "Memory bounded by bytes",
  needs: [],
  budgetMs: 80_000,
  async run(lab, { quick }) {
    // 3a: two connections echo ~1 MiB payloads (under the default --max-line) for a while.
    {
      const seconds = quick ? 4 : 15;
      const boundMiB = 1536;
      const did = `2 connections echo ~1 MiB payloads (2 in flight each) for ${seconds} s; RSS from /proc every 50 ms`;
      const expected = `server RSS < ${boundMiB} MiB throughout; server alive`;
      const server = await lab.serve(["--workers", "2"]);
      const before = server.rssMiB();
      let stop = false;
      let overAt = "";
      const t0 = performance.now();
      const rss = watchRss(lab, server, {
        ceilingMiB: boundMiB,
        over: (r) => {
          stop = true;
          overAt = `RSS passed ${boundMiB} MiB (${r} MiB) after ${(ms(t0) / 1000).toFixed(1)} s`;
          server.signal("SIGKILL"); // the bound is broken: stop the growth here
        },
      });
      const request = "/task echo " + "x".repeat(MiB - 64);
      const pump = async (c: Line) => {
        let sent = 0;
        while (!stop && performance.now() - t0 < seconds * 1000) {
          if (!(await c.send(request))) break;
          sent++;
          if (!(await c.finalsAtLeast(sent - 1, 15_000))) break;
        }
        await c.finalsAtLeast(sent, stop ? 0 : 10_000);
        return c.finalCount;
      };
      const conns = [await lab.connect(server.port), await lab.connect(server.port)];
      const echoed = (await Promise.all(conns.map(pump))).reduce((a, b) => a + b, 0);
      const elapsed = ms(t0);
      const p = server.alive ? await ping(lab, server.port, undefined, 5000) : { got: "killed" };
      await rss.end();
      for (const c of conns) await lab.hangUp(c);
      const pass = !overAt && server.alive && p.ms !== undefined;
      lab.check(
        "3a",
        did,
        expected,
        `${echoed} echoes in ${(elapsed / 1000).toFixed(1)} s; RSS ${before} MiB before, peak ${rss.peak()} MiB${
          overAt ? `; ${overAt} (the suite killed it there)` : ""
        }; /ping → ${p.ms !== undefined ? "PONG" : p.got}`,
        pass,
      );
      await server.stop(3000);
    }
    // 3b: the results kept for /status are bounded by their size, not only their count.
    {
      const n = quick ? 100 : 150;
      const did = `--max-results 100000 --max-results-size 64MiB; ${n} tasks with 1 MiB results`;
      const expected = "kept results ≤ 64 MiB (/stats retained_results ≤ 64, the first forgotten)";
      const started = await lab.start([
        "--module",
        REDTEAM_HANDLERS,
        "--max-results",
        "100000",
        "--max-results-size",
        "64MiB",
        "--workers",
        "2",
      ]);
      if (!("server" in started)) {
        const noFlag = /unknown flag --max-results-size/.test(started.failed);
        lab.check(
          "3b",
          did,
          expected,
          noFlag ? "no --max-results-size flag" : `serve did not start (exit ${started.code}): ${clip(started.failed)}`,
          false,
        );
      } else {
        const server = started.server;
        const c = await lab.connect(server.port);
        const ids: number[] = [];
        for (let i = 0; i < n; i++) {
          const id = acceptedId(await c.request("/task bytes 1048576"));
          if (id === undefined) break;
          ids.push(id);
          await c.finalsAtLeast(ids.length - 4, 10_000);
        }
        await c.finalsAtLeast(ids.length, 10_000);
        const stats = await c.request("/stats");
        const retained = Number(/"retained_results":(\d+)/.exec(stats ?? "")?.[1] ?? NaN);
        const firstStatus = ids.length ? await c.request(`/status ${ids[0]}`) : undefined;
        lab.check(
          "3b",
          did,
          expected,
          `${ids.length} done; retained_results ${retained}; /status ${ids[0]} → ${
            clip(firstStatus ?? "nothing", 60)
          }; RSS ${server.rssMiB()} MiB`,
          ids.length === n && retained <= 64 && /^STATUS \d+ unknown/.test(firstStatus ?? ""),
        );
        await lab.hangUp(c);
        await server.stop(3000);
      }
    }
    // 3c: a 200 MB result, read by a client that reads as fast as it can.
    {
      const did = "--module handler returns a 200 MB string; the client reads everything";
      const expected =
        "FAILED … handler_error … over the limit (or a documented truncation); never closed as a client that does not read";
      const server = await lab.serve(["--module", REDTEAM_HANDLERS, "--workers", "1"]);
      const rss = watchRss(lab, server, {
        ceilingMiB: 4096,
        over: () => server.signal("SIGKILL"), // a safety valve for the machine
      });
      const c = await lab.connect(server.port);
      const t0 = performance.now();
      const id = acceptedId(await c.request("/task bytes 200000000"));
      const final = id === undefined ? undefined : await c.final(id, 30_000);
      const took = ms(t0);
      const bytes = id === undefined ? 0 : c.finalBytes.get(id) ?? 0;
      const notReading = /does not read/.test(server.log());
      const p = server.alive ? await ping(lab, server.port, undefined, 5000) : { got: "server gone" };
      await rss.end();
      let what: string;
      if (final === undefined) {
        what = c.eof
          ? `the server closed the connection after ${took} ms with no final reply`
          : "no final reply in 30 s";
      } else what = `${clip(final, 140)} (${bytes} bytes, after ${took} ms)`;
      const refused = /^FAILED \d+ handler_error .*(limit|too (large|big)|exceeds|over)/i.test(final ?? "");
      const truncated = /^DONE /.test(final ?? "") && bytes < 200_000_000 && /truncat/i.test(final ?? "");
      lab.check(
        "3c",
        did,
        expected,
        `${what}${notReading ? '; log: "… a client that does not read"' : ""}; peak RSS ${rss.peak()} MiB; /ping → ${
          p.ms !== undefined ? "PONG" : p.got
        }`,
        (refused || truncated) && !notReading && p.ms !== undefined,
      );
    }
  },
};

const tls: Finding = {
  n: 4,
  title: "TLS handshakes that never come; refusals at --max-conns",
  needs: ["openssl"],
  budgetMs: 40_000,
  async run(lab, { quick }) {
    const count = quick ? 300 : 2000;
    const did4a = `${count} raw TCP connections to a TLS port (--handshake-timeout 2s) that send nothing`;
    const expected4a = "their fds closed within 2 s + 1 s (/proc/<pid>/fd); a real TLS client gets PONG";
    const did4b = "--max-conns 20 on a TLS port: 20 TLS clients in, then 10 more TCP connections";
    const expected4b = "each of the 10 closed by the server within 500 ms; no fd kept";
    if (!(await have("openssl"))) {
      lab.skip("4a", did4a, expected4a, "openssl is not on this machine");
      lab.skip("4b", did4b, expected4b, "openssl is not on this machine");
      return;
    }
    const cert = await makeCert(await lab.tmpDir());
    const tlsArgs = ["--tls-cert", cert.cert, "--tls-key", cert.key];
    {
      const server = await lab.serve([...tlsArgs, "--handshake-timeout", "2s"]);
      await ping(lab, server.port, cert.pem, 5000); // warm: the first handshake's costs paid
      await sleep(200);
      const baseline = server.fds();
      const conns: Deno.TcpConn[] = [];
      let closedByServer = 0;
      const t0 = performance.now();
      for (let i = 0; i < count; i++) {
        try {
          const conn = await lab.raw(server.port);
          conns.push(conn);
          lab.background(conn.read(new Uint8Array(16)).then(() => closedByServer++, () => closedByServer++));
        } catch {
          break;
        }
      }
      const opened = ms(t0);
      const tLast = performance.now();
      let peak = baseline;
      await until(() => {
        peak = Math.max(peak, server.fds());
        return peak >= baseline + conns.length * 0.95;
      }, 1500);
      const during = await ping(lab, server.port, cert.pem, 3000);
      let back = -1;
      await until(
        () => {
          const fds = server.fds();
          peak = Math.max(peak, fds);
          if (fds >= 0 && fds <= baseline + 5) back = ms(tLast);
          return back >= 0;
        },
        4500,
        50,
      );
      await until(() => closedByServer >= conns.length, 1000);
      const after = await ping(lab, server.port, cert.pem, 3000);
      lab.check(
        "4a",
        did4a,
        expected4a,
        `${conns.length} opened in ${opened} ms; fds ${baseline} before, peak ${peak}, ${
          back >= 0 ? `back to ≤ ${baseline + 5} ${back} ms after the last` : `still ${server.fds()} after 4.5 s`
        }; ${closedByServer}/${conns.length} closed by the server; TLS /ping during the hold → ${
          during.ms !== undefined ? `PONG in ${during.ms} ms` : during.got
        }, after → ${after.ms !== undefined ? `PONG in ${after.ms} ms` : after.got}`,
        conns.length === count && back >= 0 && back <= 3000 && after.ms !== undefined,
      );
      await server.stop(3000);
    }
    {
      const server = await lab.serve([...tlsArgs, "--max-conns", "20"]);
      const held: Line[] = [];
      for (let i = 0; i < 20; i++) {
        const c = await lab.connect(server.port, cert.pem);
        if ((await c.request("/ping")) === "PONG") held.push(c);
      }
      await sleep(100);
      const baseline = server.fds();
      const closeTimes: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = performance.now();
        const conn = await lab.raw(server.port);
        const ended = await Promise.race([
          conn.read(new Uint8Array(16)).then(() => true, () => true),
          sleep(500).then(() => false),
        ]);
        closeTimes.push(ended ? ms(t0) : Infinity);
      }
      await sleep(100);
      const fds = server.fds();
      const closed = closeTimes.filter(Number.isFinite);
      lab.check(
        "4b",
        did4b,
        expected4b,
        `${held.length} TLS clients held; ${closed.length}/10 refused and closed, slowest ${
          closed.length ? Math.max(...closed) : "-"
        } ms; server fds ${baseline} → ${fds}`,
        held.length === 20 && closed.length === 10 && fds <= baseline + 2,
      );
    }
  },
};

const strangers: Finding = {
  n: 5,
  title: "Strangers holding slots; wrong tokens flooding the log",
  needs: [],
  budgetMs: 40_000,
  async run(lab) {
    const token = randomHex(16);
    const server = await lab.serve(["--max-conns", "20", "--auth-timeout", "2s"], {
      env: { ASYNCTASK_TOKEN: token },
    });
    // 5a: 20 strangers take every slot, each sending a byte a second, never a newline.
    {
      const strangers: Line[] = [];
      for (let i = 0; i < 20; i++) strangers.push(await lab.connect(server.port));
      const t0 = performance.now();
      for (const s of strangers) {
        lab.background((async () => {
          const end = performance.now() + 8000;
          while (!s.eof && performance.now() < end && !lab.closed) {
            if (!(await s.sendRaw(encoder.encode("x")))) break;
            await s.closed(1000);
          }
        })());
      }
      let inAt = -1;
      let refusedTries = 0;
      while (ms(t0) < 5000 && inAt < 0) {
        let c: Line;
        try {
          c = await lab.connect(server.port);
        } catch {
          refusedTries++;
          await sleep(100);
          continue;
        }
        const reply = await c.request(`/auth ${token}`, 1000);
        if (reply === "OK" && (await c.request("/ping", 1000)) === "PONG") inAt = ms(t0);
        else refusedTries++;
        await lab.hangUp(c);
        if (inAt < 0) await sleep(100);
      }
      await until(() => strangers.every((s) => s.eof), Math.max(0, 4500 - ms(t0)));
      const closedStrangers = strangers.filter((s) => s.eof);
      const slowest = Math.max(0, ...closedStrangers.map((s) => Math.round(s.eofAt - t0)));
      lab.check(
        "5a",
        "--token, --max-conns 20, --auth-timeout 2s; 20 connections trickle a byte a second, no newline",
        "a client with the right token gets in (OK, PONG) within 2 s + 1 s",
        `${
          inAt >= 0 ? `in after ${inAt} ms` : "not in after 5 s"
        } (${refusedTries} tries refused first); ${closedStrangers.length}/20 strangers closed by the server (the last after ${slowest} ms)`,
        inAt >= 0 && inAt <= 3000,
      );
      for (const s of strangers) await lab.hangUp(s);
    }
    // 5b: a hundred wrong tokens from one peer, at once (a server may hold each answer back a while).
    {
      await server.stop(3000);
      const second = await lab.serve([], { env: { ASYNCTASK_TOKEN: token } });
      const t0 = performance.now();
      const attempt = async (i: number): Promise<number | undefined> => {
        let c: Line;
        try {
          c = await lab.connect(second.port);
        } catch {
          return undefined;
        }
        const t = performance.now();
        const reply = await c.request(`/auth wrong-${i}`, 10_000);
        const refused = /^ERROR unauthorized/.test(reply ?? "") && (await c.closed(2000));
        const took = ms(t);
        await lab.hangUp(c);
        return refused ? took : undefined;
      };
      const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => attempt(i)));
      const took = ms(t0);
      await sleep(300); // the logger writes once per event-loop turn
      const refused = answers.filter((a): a is number => a !== undefined);
      const warnings = second.log().split("\n").filter((l) => /\[WRN\]/.test(l));
      lab.check(
        "5b",
        "/auth with a wrong token 100 times from 127.0.0.1 (100 connections at once)",
        "each refused (ERROR unauthorized, closed); at most 5 WRN lines for that peer per minute",
        `${refused.length}/100 refused and closed within ${took} ms (answers after ${Math.min(...refused)}–${
          Math.max(...refused)
        } ms); ${warnings.length} WRN lines${
          warnings.length ? `, e.g. "${clip(warnings[0].replace(/^.*?\[WRN\] /, ""), 100)}"` : ""
        }`,
        refused.length === 100 && warnings.length <= 5,
      );
    }
  },
};

const crashFate: Finding = {
  n: 6,
  title: "A crash shares no fate",
  needs: [],
  budgetMs: 30_000,
  async run(lab) {
    const server = await lab.serve(["--module", TEST_HANDLERS, "--workers", "1", "--retries", "0"]);
    const c = await lab.connect(server.port);
    const lines = [...Array.from({ length: 20 }, () => "/task sleep 1000"), "/task crash x"];
    await c.send(...lines);
    const ids: (number | undefined)[] = [];
    for (const _ of lines) ids.push(acceptedId(await c.next()));
    const finals: (string | undefined)[] = [];
    for (const id of ids) finals.push(id === undefined ? undefined : await c.final(id, 15_000));
    const crash = finals[20];
    const sleeps = finals.slice(0, 20);
    const done = sleeps.filter((f) => /^DONE \d+ \{"slept_ms":1000\}/.test(f ?? "")).length;
    const bad = sleeps.find((f) => !/^DONE /.test(f ?? ""));
    lab.check(
      "6",
      "--retries 0, 1 worker: 20 `sleep 1000` tasks and a `crash` task (tests/fixtures/handlers.ts) on it",
      "only the crasher fails (worker_crashed); the 20 sleeps DONE",
      `crash → ${clip(crash ?? "no final reply", 100)}; ${done}/20 sleeps DONE${
        bad !== undefined ? `; e.g. ${clip(bad ?? "no final reply", 100)}` : ""
      }`,
      /^FAILED \d+ worker_crashed/.test(crash ?? "") && done === 20,
    );
  },
};

const hog: Finding = {
  n: 7,
  title: "ArrayBuffers past --worker-heap, abort ignored",
  needs: [],
  budgetMs: 40_000,
  async run(lab, { quick }) {
    const server = await lab.serve(["--module", REDTEAM_HANDLERS, "--workers", "1", "--worker-heap", "64MiB"]);
    const c = await lab.connect(server.port);
    await ping(lab, server.port, undefined, 5000);
    const before = server.rssMiB();
    let valve = false;
    const rss = watchRss(lab, server, {
      ceilingMiB: before + 3072,
      over: () => {
        valve = true;
        server.signal("SIGKILL"); // the safety valve: the worker was not replaced
      },
    });
    const t0 = performance.now();
    const lines = ["/task hog x", "/task sleep 500", "/task sleep 500", "/task sleep 500", "/task sleep 500"];
    await c.send(...lines);
    const ids: (number | undefined)[] = [];
    for (const _ of lines) ids.push(acceptedId(await c.next()));
    const hogFinal = ids[0] === undefined ? undefined : await c.final(ids[0], quick ? 12_000 : 20_000);
    const hogMs = ms(t0);
    const sleeps: (string | undefined)[] = [];
    for (const id of ids.slice(1)) sleeps.push(id === undefined ? undefined : await c.final(id, 10_000));
    await rss.end();
    const done = sleeps.filter((f) => /^DONE /.test(f ?? "")).length;
    const replaced = server.log().split("\n").find((l) => /worker \d+ .*replaced/.test(l));
    const peakOver = rss.peak() - before;
    lab.check(
      "7",
      "--worker-heap 64MiB, 1 worker: a handler piles up 16 MiB ArrayBuffers every 10 ms ignoring its signal, beside 4 `sleep 500`",
      "its worker replaced within 5 s (the hog FAILED); RSS peak < 1 GiB over the start; the sleeps DONE",
      `hog → ${
        hogFinal ? `${clip(hogFinal, 110)} after ${hogMs} ms` : `no final reply after ${hogMs} ms`
      }; RSS ${before} MiB before, peak ${rss.peak()} MiB${
        valve ? " (the suite killed the server at +3 GiB)" : ""
      }; ${done}/4 sleeps DONE; log: ${replaced ? clip(replaced.replace(/^.*?\] /, ""), 100) : "no worker replaced"}`,
      /^FAILED \d+ /.test(hogFinal ?? "") && hogMs <= 5000 && peakOver < 1024 && done === 4 && !valve,
    );
  },
};

const stubbornChild: Finding = {
  n: 8,
  title: "A command that ignores SIGTERM outlives no server",
  needs: [],
  budgetMs: 30_000,
  async run(lab) {
    const dir = await lab.tmpDir();
    // A fraction of a second of its own in `sleep`'s argument finds this run's processes in /proc.
    const marker = `30.${Math.floor(Math.random() * 1e6).toString().padStart(6, "0")}1`;
    const config = {
      tasks: {
        stubborn: { kind: "command", command: ["sh", "-c", `trap "" TERM; sleep ${marker}`], timeout: "1s" },
        echo: { kind: "builtin" },
      },
    };
    await Deno.writeTextFile(`${dir}/asynctask.json`, JSON.stringify(config));
    const server = await lab.serve(["--config", `${dir}/asynctask.json`]);
    const did =
      "command task `sh -c 'trap \"\" TERM; sleep 30'` (timeout 1s) times out; SIGTERM to the server inside its 2 s TERM→KILL window";
    const expected = "after the server exits, no process of that command alive (/proc/*/cmdline)";
    let observed: string;
    let pass = false;
    try {
      const c = await lab.connect(server.port);
      const id = acceptedId(await c.request("/task stubborn x"));
      const appeared = await until(() => processesWith(marker).size > 0, 5000);
      const tStart = performance.now();
      // The timeout's SIGTERM comes 1 s after the start; SIGKILL 2 s later. Signal the server in between.
      const failed = id === undefined ? undefined : await c.final(id, 1600);
      await until(() => ms(tStart) >= 1500, 2000);
      const before = processesWith(marker).size;
      const termAt = ms(tStart);
      server.signal("SIGTERM");
      const exitTimer = setTimeout(() => server.signal("SIGKILL"), 10_000);
      const status = await server.exited();
      clearTimeout(exitTimer);
      const exitedAt = ms(tStart);
      const left = processesWith(marker);
      observed = `${appeared ? "the command started" : "the command was not seen"}; ${
        clip(failed ?? "no final reply yet", 70)
      }; SIGTERM to the server ${termAt} ms after the start with ${before} process(es) of it alive; server exit ${status.code} at ${exitedAt} ms; after: ${
        left.size === 0 ? "none alive" : `${left.size} alive (${[...left.keys()].join(", ")})`
      }`;
      pass = appeared && before > 0 && left.size === 0;
    } finally {
      // What the server left behind is ended here (its children, started by this experiment).
      for (const pid of processesWith(marker).keys()) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
    }
    lab.check("8", did, expected, observed, pass);
  },
};

const environToken: Finding = {
  n: 9,
  title: "The token in /proc/<pid>/environ",
  needs: [],
  budgetMs: 20_000,
  async run(lab) {
    const token = `redteam-${randomHex(12)}`;
    const server = await lab.serve(["--log-level", "debug"], { env: { ASYNCTASK_TOKEN: token } });
    const inCmdline = (await Deno.readTextFile(`/proc/${server.pid}/cmdline`)).includes(token);
    // Reading the environment back proves nothing as root (root reads every process's). What
    // guards it is that the server is not dumpable: /proc/<pid>/environ is then root's alone, not
    // its user's (tests/hidden_env_test.ts checks that with two processes of one non-root user).
    const hidden = /this process is not dumpable/.test(server.log());
    lab.check(
      "9",
      "serve with ASYNCTASK_TOKEN in its environment; is its /proc/<pid>/environ hidden from its user, and its cmdline clean?",
      "not dumpable (environ readable by root only); no token in cmdline",
      `${
        hidden ? "not dumpable: environ hidden from the user's processes" : "dumpable: environ readable by the user"
      }; cmdline: ${inCmdline ? "token IN it" : "no token"}`,
      hidden && !inCmdline,
    );
  },
};

const smallOnes: Finding = {
  n: 10,
  title: "Small ones: bad UTF-8 before /auth, plain TCP on a TLS port, a certificate that never ends",
  needs: [],
  budgetMs: 40_000,
  async run(lab) {
    {
      const server = await lab.serve([], { env: { ASYNCTASK_TOKEN: randomHex(16) } });
      const c = await lab.connect(server.port);
      await c.sendRaw(new Uint8Array([0xc3, 0x28, 0xff, 0xfe, 0x0a]));
      const reply = await c.next(2000);
      const closed = await c.closed(2000);
      lab.check(
        "10a",
        "invalid UTF-8 as the first line to a server with a token",
        "ERROR unauthorized, then the connection closed",
        `${clip(reply ?? "no reply", 100)}; ${closed ? "closed" : "still open after 2 s"}`,
        /^ERROR unauthorized/.test(reply ?? "") && closed,
      );
      await server.stop(3000);
    }
    const didB = "`client --port <TLS port> --send /ping` (plain TCP) against a TLS port";
    const expectedB = 'the message "speaks TLS" and a non-zero exit';
    const didC = "serve --tls-cert /dev/zero (with a real --tls-key)";
    const expectedC = "a clear error (naming --tls-cert) and a non-zero exit within 2 s, not a hang";
    if (!(await have("openssl"))) {
      lab.skip("10b", didB, expectedB, "openssl is not on this machine");
      lab.skip("10c", didC, expectedC, "openssl is not on this machine");
      return;
    }
    const cert = await makeCert(await lab.tmpDir());
    {
      const server = await lab.serve(["--tls-cert", cert.cert, "--tls-key", cert.key]);
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}main.ts`, "client", "--port", String(server.port), "--send", "/ping"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1", ASYNCTASK_TOKEN: "" },
      }).spawn();
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const out = await child.output();
      clearTimeout(killer);
      const stderr = new TextDecoder().decode(out.stderr);
      lab.check(
        "10b",
        didB,
        expectedB,
        `exit ${out.code}; stderr: ${clip(stderr || "(empty)", 120)}`,
        out.code !== 0 && /speaks TLS/.test(stderr),
      );
      await server.stop(3000);
    }
    {
      const t0 = performance.now();
      let valve = "";
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          `${ROOT}main.ts`,
          "serve",
          "--port",
          "0",
          "--tls-cert",
          "/dev/zero",
          "--tls-key",
          cert.key,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1", ASYNCTASK_TOKEN: "" },
      }).spawn();
      let running = true;
      const watch = (async () => {
        while (running) {
          const rss = rssMiBOf(child.pid);
          if (rss > 2048 || ms(t0) > 8000) {
            valve = rss > 2048
              ? `no exit: killed by the suite at ${rss} MiB RSS after ${ms(t0)} ms`
              : "no exit: killed by the suite after 8 s";
            try {
              child.kill("SIGKILL");
            } catch {
              // exited
            }
            return;
          }
          await sleep(50);
        }
      })();
      const out = await child.output();
      running = false;
      await watch;
      const took = ms(t0);
      const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      const clear = /tls-cert|certificate/i.test(text);
      lab.check(
        "10c",
        didC,
        expectedC,
        `${valve || `exit ${out.code} after ${took} ms`}; said: ${clip(text || "(nothing)", 140)}`,
        !valve && out.code !== 0 && took <= 2000 && clear,
      );
    }
  },
};

/** Every finding, in order. */
export const FINDINGS: Finding[] = [
  resetStorm,
  unsendable,
  memory,
  tls,
  strangers,
  crashFate,
  hog,
  stubbornChild,
  environToken,
  smallOnes,
];

/**
 * Runs one finding's experiment within its budget, and ends everything it started. A thrown
 * error or a budget overrun is a FAIL row; the checks recorded before it stay.
 */
export async function runFinding(finding: Finding, opts: RunOptions): Promise<Row[]> {
  const lab = new Lab(finding.n);
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const run = finding.run(lab, opts);
  const overrun = new Promise<"overrun">((resolve) => (timer = setTimeout(() => resolve("overrun"), finding.budgetMs)));
  try {
    const outcome = await Promise.race([run.then((): "ok" => "ok"), overrun]);
    if (outcome === "overrun") {
      lab.check(
        String(finding.n),
        finding.title,
        `the experiment ends within ${finding.budgetMs / 1000} s`,
        `stopped after ${finding.budgetMs / 1000} s`,
        false,
      );
    }
  } catch (e) {
    lab.check(String(finding.n), finding.title, "the experiment runs", `it failed: ${clip(messageOf(e), 300)}`, false);
  } finally {
    clearTimeout(timer);
    await lab.close();
    // An overrun experiment ends once what it waited on is gone; wait for it, a little.
    await Promise.race([run.catch(() => {}), sleep(5000)]);
  }
  const took = ms(t0);
  return lab.checks.map((c) => ({ finding: finding.n, title: finding.title, ms: took, ...c }));
}

/** The rows as a Markdown table. */
export function markdown(rows: Row[]): string {
  const cell = (s: string) => s.replaceAll("|", "\\|").replace(/\s+/g, " ");
  const out = [
    "| # | finding | what was done | expected | observed | result |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    out.push(
      `| ${r.id} | ${cell(r.title)} | ${cell(r.did)} | ${cell(r.expected)} | ${cell(r.observed)} | **${r.verdict}** |`,
    );
  }
  return out.join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      json: { type: "boolean", default: false },
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno task redteam [--quick] [--only 1,4,…] [--json]\n" +
        "Runs each finding of the hardening review as an experiment against a real server on 127.0.0.1.",
    );
    return 0;
  }
  const only = values.only?.split(",").map(Number);
  const chosen = FINDINGS.filter((f) => !only || only.includes(f.n));
  const rows: Row[] = [];
  const t0 = performance.now();
  for (const f of chosen) {
    console.error(`redteam: ${f.n}. ${f.title} …`);
    const got = await runFinding(f, { quick: values.quick });
    for (const r of got) console.error(`  ${r.id} ${r.verdict}: ${r.observed}`);
    rows.push(...got);
  }
  const count = (v: Verdict) => rows.filter((r) => r.verdict === v).length;
  const summary = { pass: count("PASS"), fail: count("FAIL"), skip: count("SKIP"), seconds: ms(t0) / 1000 };
  if (values.json) console.log(JSON.stringify({ ...summary, rows }, null, 2));
  else {
    console.log(markdown(rows));
    console.log(
      `\n${summary.pass} PASS, ${summary.fail} FAIL, ${summary.skip} SKIP in ${summary.seconds.toFixed(1)} s`,
    );
  }
  return summary.fail > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());

/**
 * Test helpers: a real server on a free loopback port (in this process, or as a child process),
 * and a line client over a real socket. No mocks.
 *
 * @module
 */
import { readLines } from "../client/connection.ts";
import { DEFAULT_SERVE_OPTIONS, type ServeOptions, TaskServer } from "../server/mod.ts";

/** The repository root. */
export const ROOT = new URL("../", import.meta.url).pathname;
/** The handler fixtures' module URL. */
export const FIXTURE_HANDLERS = new URL("./fixtures/handlers.ts", import.meta.url).href;

const encoder = new TextEncoder();

/** Starts a server in this process on a free port; close it with `await server.shutdown(…)`. */
export function startServer(opts: Partial<ServeOptions> = {}): Promise<TaskServer> {
  return TaskServer.start({ ...DEFAULT_SERVE_OPTIONS, port: 0, smsDelayMs: 50, ...opts });
}

/** A raw line client. Every wait has a timeout, so a broken server fails a test instead of hanging it. */
export class LineClient {
  readonly lines: string[] = [];
  #read = 0;
  #waiters: (() => void)[] = [];
  #eof = false;
  readonly #loop: Promise<void>;

  private constructor(readonly conn: Deno.TcpConn | Deno.TlsConn) {
    this.#loop = this.#readLoop();
  }

  static async connect(port: number, hostname = "127.0.0.1"): Promise<LineClient> {
    return new LineClient(await Deno.connect({ hostname, port }));
  }

  /** Connects with TLS, trusting `caCert` (PEM). */
  static async connectTls(port: number, caCert: string, hostname = "127.0.0.1"): Promise<LineClient> {
    const conn = await Deno.connectTls({ hostname, port, caCerts: [caCert] });
    await conn.handshake();
    return new LineClient(conn);
  }

  /** Sends lines, each with `\n`, in one write. */
  async send(...lines: string[]): Promise<void> {
    await this.sendRaw(encoder.encode(lines.map((l) => l + "\n").join("")));
  }

  /** Sends bytes as they are. */
  async sendRaw(data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    for (let at = 0; at < bytes.length;) at += await this.conn.write(bytes.subarray(at));
  }

  /** The next line not yet taken. */
  async next(timeoutMs = 10_000): Promise<string> {
    await this.#waitFor(() => this.lines.length > this.#read || this.#eof, timeoutMs, "a line");
    if (this.lines.length <= this.#read) throw new Error("connection closed before the next line");
    return this.lines[this.#read++];
  }

  /** The next `n` lines. */
  async take(n: number, timeoutMs = 10_000): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(timeoutMs));
    return out;
  }

  /** Resolves when the server has closed the connection. */
  async closedByServer(timeoutMs = 10_000): Promise<void> {
    await this.#waitFor(() => this.#eof, timeoutMs, "the server to close the connection");
  }

  /** Closes the connection and waits for the read loop to end. */
  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // closed already
    }
    await this.#loop;
  }

  async #waitFor(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ok()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; lines so far:\n${this.lines.join("\n")}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const resolve of w) resolve();
  }

  async #readLoop(): Promise<void> {
    await readLines(this.conn, (line) => {
      this.lines.push(line);
      this.#wake();
    });
    this.#eof = true;
    this.#wake();
  }
}

/** Runs `asynctask` (main.ts) as a child process with `args` and optional stdin; collects its output. */
export async function runCli(
  args: string[],
  opts: { stdin?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}main.ts`, ...args],
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    // A token only when the test gives one: another test module of this process may have one set for
    // an in-process server of its own (modules run in parallel, and share the environment).
    env: { NO_COLOR: "1", ASYNCTASK_TOKEN: "", ...opts.env },
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(encoder.encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A `serve` child process on a free port. */
export interface ServeProcess {
  port: number;
  child: Deno.ChildProcess;
  /** Everything it logged so far. */
  log: () => string;
  /** Waits for it to exit; returns the exit code and the whole log. */
  exited: () => Promise<{ code: number; log: string }>;
}

/**
 * Starts `main.ts serve --port 0 …` (or another executable's `serve`) and waits until it listens.
 * `maxFiles` runs it under `ulimit -n`, to make it run out of file descriptors.
 */
export async function spawnServe(
  args: string[],
  exe?: string,
  opts: { maxFiles?: number; env?: Record<string, string>; denoTask?: boolean } = {},
): Promise<ServeProcess> {
  let argv = exe ? [exe, "serve", "--port", "0", ...args] : opts.denoTask
    // As the README starts it, in a process group of its own (the child's pid is the group's id),
    // so that a test can signal the whole group the way a terminal's Ctrl-C does.
    ? ["setsid", Deno.execPath(), "task", "--config", `${ROOT}deno.json`, "serve", "--port", "0", ...args]
    : [Deno.execPath(), "run", "-A", `${ROOT}main.ts`, "serve", "--port", "0", ...args];
  if (opts.maxFiles) argv = ["/bin/sh", "-c", `ulimit -n ${opts.maxFiles} && exec "$0" "$@"`, ...argv];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    // A token only when the test gives one: another test module of this process may have one set for
    // an in-process server of its own (modules run in parallel, and share the environment).
    env: { NO_COLOR: "1", ASYNCTASK_TOKEN: "", ...opts.env },
  }).spawn();
  let log = "";
  const listening = Promise.withResolvers<number>();
  const drained = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) {
      log += dec.decode(chunk, { stream: true });
      const m = /listening on [\d.]+:(\d+)/.exec(log);
      if (m) listening.resolve(Number(m[1]));
    }
    listening.reject(new Error(`serve exited before listening:\n${log}`));
  })();
  const timer = setTimeout(() => listening.reject(new Error(`serve did not listen within 20 s:\n${log}`)), 20_000);
  try {
    const port = await listening.promise;
    return {
      port,
      child,
      log: () => log,
      exited: async () => {
        const status = await child.status;
        await drained;
        return { code: status.code, log };
      },
    };
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone already
    }
    await child.status;
    await drained;
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Why a test that needs `openssl` (to make certificates: {@linkcode makeCertificates}) cannot run
 * here, or `undefined` when it can. A test names the reason and is ignored: reported as skipped.
 */
export async function opensslMissing(): Promise<string | undefined> {
  try {
    // Spawning a program that is not installed throws here, at once, not in the promise.
    const out = await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" }).output();
    return out.success ? undefined : "`openssl version` fails on this machine (openssl makes the test certificates)";
  } catch {
    return "openssl is not installed (it makes the test certificates; .ci/run installs it)";
  }
}

/**
 * Makes a test certificate authority and a server certificate for 127.0.0.1 and localhost,
 * signed by it, with `openssl`. Returns the PEM texts and the files' paths.
 */
export async function makeCertificates(
  dir: string,
): Promise<{ ca: string; cert: string; key: string; paths: { ca: string; cert: string; key: string } }> {
  const run = async (...args: string[]) => {
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new Error("openssl is not installed: a test that makes certificates must check opensslMissing() first");
    }
    if (!out.success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  };
  await run(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=asynctask test CA",
  );
  await run(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "key.pem",
    "-out",
    "server.csr",
    "-subj",
    "/CN=localhost",
  );
  await Deno.writeTextFile(`${dir}/ext.cnf`, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n");
  await run(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "cert.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  );
  const paths = { ca: `${dir}/ca.pem`, cert: `${dir}/cert.pem`, key: `${dir}/key.pem` };
  return {
    ca: await Deno.readTextFile(paths.ca),
    cert: await Deno.readTextFile(paths.cert),
    key: await Deno.readTextFile(paths.key),
    paths,
  };
}

/**
 * Polls `check` until it returns true, or fails after `timeoutMs` saying what was awaited. For
 * conditions that a loaded machine reaches later than usual — never a fixed sleep.
 */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sends `request` on `client` until the reply matches `expected` (e.g. a task reaching `done`). */
export async function untilReply(client: LineClient, request: string, expected: RegExp): Promise<string> {
  let last = "";
  await eventually(`a reply to ${request} matching ${expected}`, async () => {
    await client.send(request);
    last = await client.next();
    return expected.test(last);
  });
  return last;
}

/** A command running in a pseudo-terminal: what it printed so far, and keys to type. */
export interface Terminal {
  /** Everything written to the terminal so far, escape sequences included. */
  readonly screen: string;
  waitFor(re: RegExp, what: string, timeoutMs?: number): Promise<void>;
  type(text: string): Promise<void>;
  readonly status: Promise<Deno.CommandStatus>;
  close(): Promise<void>;
}

/** Runs `cmd` in a pseudo-terminal with `script` from util-linux (which .ci/run installs). */
/** Why terminal tests cannot run here (`script` is missing), or "" when they can. */
export const NO_TERMINAL: string = (() => {
  try {
    Deno.statSync("/usr/bin/script");
    return "";
  } catch {
    return "`script` (util-linux) is missing; .ci/run installs it";
  }
})();

/** A test that drives a program in a pseudo-terminal: reported skipped, with why, where `script` is missing. */
export function terminalTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: NO_TERMINAL ? `${name}: SKIPPED — ${NO_TERMINAL}` : name, ignore: NO_TERMINAL !== "", fn });
}

export async function openTerminal(cmd: string): Promise<Terminal> {
  const script = "/usr/bin/script";
  try {
    await Deno.stat(script);
  } catch {
    throw new Error(
      "this test needs `script` from util-linux (Debian package bsdutils/util-linux); .ci/run installs it",
    );
  }
  const child = new Deno.Command(script, {
    args: ["-qfec", cmd, "/dev/null"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", TERM: "xterm", ASYNCTASK_TOKEN: "" },
  }).spawn();
  let screen = "";
  const reader = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stdout) screen += dec.decode(chunk, { stream: true });
  })();
  const w = child.stdin.getWriter();
  return {
    get screen() {
      return screen;
    },
    async waitFor(re, what, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(screen)) {
        if (Date.now() > deadline) throw new Error(`no ${what} on the terminal:\n${JSON.stringify(screen)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    type: (text) => w.write(encoder.encode(text)),
    status: child.status,
    async close() {
      await w.close().catch(() => {});
      try {
        child.kill();
      } catch {
        // exited
      }
      await child.status;
      await reader;
      await child.stderr.cancel();
    },
  };
}

/**
 * A real `redis-server` for the broker's tests: started on a free loopback port with a temp dir,
 * restartable on the same port and dir (with its AOF), stopped by the test. Where Debian's
 * `redis-server` is not installed, {@linkcode redisMissing} says why and the tests are skipped.
 */

/** Why the broker's tests cannot run here, or `undefined` when they can. */
export async function redisMissing(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("redis-server", { args: ["--version"], stdout: "piped", stderr: "null" })
      .output();
    if (!out.success) return "`redis-server --version` fails on this machine";
    const v = /v=(\d+)/.exec(new TextDecoder().decode(out.stdout));
    if (v && Number(v[1]) < 7) return `redis-server ${v[1]}.x is too old: the broker needs Redis 7`;
    return undefined;
  } catch {
    return "redis-server is not installed (Debian's redis-server package; .ci/run installs it)";
  }
}

/** A free TCP port on 127.0.0.1, for a server that is started next. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** How a test's Redis is set up. */
export interface RedisOptions {
  /** AOF persistence: `always` fsyncs each write; absent: no persistence. */
  aof?: "always" | "everysec";
  /** `requirepass`. */
  password?: string;
  /** Serve TLS only, with this certificate and key (PEM files), signed by `ca`. */
  tls?: { cert: string; key: string; ca: string };
}

/** One `redis-server` process, and how to stop, kill and start it again. */
export class RedisServer {
  readonly port = freePort();
  #child?: Deno.ChildProcess;
  #log = "";

  private constructor(readonly dir: string, readonly opts: RedisOptions) {}

  /** Starts a Redis on a free port, in a new temp dir. */
  static async start(opts: RedisOptions = {}): Promise<RedisServer> {
    const r = new RedisServer(await Deno.makeTempDir({ prefix: "asynctask-redis-" }), opts);
    await r.restart();
    return r;
  }

  /** `redis://127.0.0.1:<port>/0` (`rediss://` with TLS). */
  get url(): string {
    return `${this.opts.tls ? "rediss" : "redis"}://127.0.0.1:${this.port}/0`;
  }

  /** Starts it (again: same port, same dir, its AOF replayed) and waits until it answers. */
  async restart(): Promise<void> {
    const t = this.opts.tls;
    const args = t
      ? ["--port", "0", "--tls-port", String(this.port), "--tls-cert-file", t.cert, "--tls-key-file", t.key]
      : ["--port", String(this.port)];
    if (t) args.push("--tls-ca-cert-file", t.ca, "--tls-auth-clients", "no");
    args.push("--bind", "127.0.0.1", "--dir", this.dir, "--save", "");
    args.push("--appendonly", this.opts.aof ? "yes" : "no");
    if (this.opts.aof) args.push("--appendfsync", this.opts.aof);
    if (this.opts.password) args.push("--requirepass", this.opts.password);
    this.#child = new Deno.Command("redis-server", { args, stdout: "piped", stderr: "piped" }).spawn();
    const child = this.#child;
    (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stdout) this.#log += dec.decode(chunk);
    })();
    child.stderr.cancel();
    for (let i = 0; i < 200; i++) {
      if (await this.#answers()) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`redis-server did not answer on port ${this.port} within 5 s:\n${this.#log}`);
  }

  async #answers(): Promise<boolean> {
    try {
      const t = this.opts.tls;
      const c = t
        ? await Deno.connectTls({ hostname: "127.0.0.1", port: this.port, caCerts: [await Deno.readTextFile(t.ca)] })
        : await Deno.connect({ hostname: "127.0.0.1", port: this.port });
      try {
        await c.write(new TextEncoder().encode("PING\r\n"));
        const buf = new Uint8Array(64);
        const n = await c.read(buf);
        const text = new TextDecoder().decode(buf.subarray(0, n ?? 0));
        // With a password, PING is refused with NOAUTH: it answers all the same.
        return text.startsWith("+PONG") || text.startsWith("-NOAUTH") || text.startsWith("-ERR");
      } finally {
        c.close();
      }
    } catch {
      return false;
    }
  }

  /** Stops it: `SIGKILL` (nothing flushed beyond what its fsync policy wrote) or `SIGTERM` (a clean stop). */
  async stop(signal: "SIGKILL" | "SIGTERM" = "SIGTERM"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    try {
      child.kill(signal);
    } catch {
      // gone already
    }
    await child.status;
  }

  /** Runs `redis-cli` against it; returns its output. */
  async cli(...args: string[]): Promise<string> {
    const auth = this.opts.password ? ["-a", this.opts.password, "--no-auth-warning"] : [];
    if (this.opts.tls) auth.push("--tls", "--cacert", this.opts.tls.ca);
    const out = await new Deno.Command("redis-cli", {
      args: ["-p", String(this.port), ...auth, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  }

  /** Stops it and removes its dir. */
  async dispose(): Promise<void> {
    await this.stop("SIGKILL");
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Listening: the TCP (or TLS) socket, the accept loop, `--max-conns`, and the deadlines that close
 * connections which hold a slot without using it — a TLS handshake that never finishes, a token
 * that never comes, a client that stays silent.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { formatDuration, formatSize } from "../cli/units.ts";
import { StartError } from "./errors.ts";
import { Connection, type ConnectionLimits } from "./net/connection.ts";
import { ReplyHold } from "./net/reply_hold.ts";
import type { LineEvent } from "./net/lines.ts";
import type { PollGate } from "./net/poll_gate.ts";
import type { SocketListener, StreamConn, TlsListener } from "./net/tls.ts";
import { reply } from "./protocol.ts";

const log = getLogger(["asynctask", "server"]);

/** What the listener needs to know. */
export interface ListenOptions {
  host: string;
  port: number;
  /** PEM certificate chain and key: TLS instead of plain TCP. */
  tls?: { cert: string; key: string };
  maxConns: number;
  idleTimeoutMs: number;
  maxLine: number;
  maxOutput: number;
  /** A TLS connection that has not finished its handshake after this long is closed. */
  handshakeTimeoutMs: number;
  /** With a token, a connection that has not authenticated after this long is closed; 0 = never. */
  authTimeoutMs: number;
  /** Whether connections must authenticate (`--token`). */
  tokenRequired: boolean;
  /** With a token, most connections at once that have not authenticated yet. */
  maxUnauthConns: number;
  /** How long an `ACCEPTED` may wait to share a write with its task's final reply, ms; 0 = never (`--accept-hold`). */
  acceptHoldMs?: number;
}

/** What the listener hands on. */
export interface ListenEvents {
  /** One event of a connection's line framing. */
  line(conn: Connection, event: LineEvent): void;
  /** A connection was refused (`--max-conns`). */
  refused(): void;
  /** Resolves when what the replies announce is durable; absent when nothing waits. */
  beforeWrite?(): Promise<void>;
}

/**
 * Errors of `accept` that mean the process is short of something (file descriptors, memory,
 * buffers): waiting a little helps. Anything else — a connection reset before it was accepted
 * (`ENOTCONN`, os error 107; `ECONNABORTED`, 103) — concerns one connection, which is skipped.
 */
const EXHAUSTION = /os error (23|24|12|105)\b|Too many open files|Cannot allocate memory|No buffer space/i;

/**
 * Opens the socket — plain TCP, or TLS with a deadline on each handshake — or throws a
 * {@linkcode StartError} that names the fix.
 *
 * @example
 * ```ts
 * import { openListener } from "./listen.ts";
 * import assert from "node:assert/strict";
 * const l = await openListener({ host: "127.0.0.1", port: 0, handshakeTimeoutMs: 10_000 });
 * assert.ok((l.addr as Deno.NetAddr).port > 0);
 * l.close();
 * ```
 */
export async function openListener(
  o: {
    host: string;
    port: number;
    tls?: { cert: string; key: string };
    handshakeTimeoutMs: number;
    reusePort?: boolean;
  },
): Promise<SocketListener> {
  const where = `${o.host}:${o.port}`;
  try {
    if (o.tls && o.reusePort) {
      throw new StartError(
        "--reuse-port works with plain TCP only for now; with --tls-cert, put the servers on separate ports behind a TCP load balancer",
      );
    }
    if (o.tls) {
      // Loaded only for TLS: node:tls brings Node's stream machinery along, which a plain server does without.
      const { TlsListener } = await import("./net/tls.ts");
      return await TlsListener.open({
        hostname: o.host,
        port: o.port,
        ...o.tls,
        handshakeTimeoutMs: o.handshakeTimeoutMs,
      });
    }
    return Deno.listen({ hostname: o.host, port: o.port, transport: "tcp", reusePort: o.reusePort });
  } catch (e) {
    if (e instanceof StartError) throw e;
    const message = e instanceof Error ? e.message : String(e);
    const code = (e as { code?: unknown }).code; // node:net errors carry a code such as "EADDRINUSE"
    if (e instanceof Deno.errors.AddrInUse || code === "EADDRINUSE") {
      throw new StartError(
        `cannot listen on ${where}: the address is already in use — is another asynctask (or other server) running there? Stop it or choose another --port`,
      );
    }
    if (e instanceof Deno.errors.PermissionDenied || code === "EACCES") {
      throw new StartError(
        `cannot listen on ${where}: permission denied — ports below 1024 need privileges; choose a --port of 1024 or more`,
      );
    }
    if (e instanceof Deno.errors.AddrNotAvailable || code === "EADDRNOTAVAIL") {
      throw new StartError(`cannot listen on ${where}: no such address on this machine — check --host`);
    }
    if (o.tls) {
      throw new StartError(
        `cannot serve TLS: ${message} — check that --tls-cert is a PEM certificate (chain) and --tls-key its PEM private key`,
      );
    }
    throw new StartError(`cannot listen on ${where}: ${message} — check --host and --port`);
  }
}

/** Whether a listener is the TLS one (it counts handshakes, and admits connections before them). */
function isTls(socket: SocketListener): socket is TlsListener {
  return "handshaking" in socket && "admit" in socket;
}

/**
 * The accept loop and the open connections.
 *
 * @example
 * ```ts ignore
 * const listener = new Listener(openListener(opts), opts, { line: (c, e) => desk.line(c, e), refused: () => {} });
 * await listener.stop();
 * ```
 */
export class Listener {
  readonly addr: Deno.NetAddr;
  readonly #socket: SocketListener;
  /** The socket, when it is the TLS listener. */
  readonly #tls: TlsListener | undefined;
  readonly #opts: ListenOptions;
  readonly #events: ListenEvents;
  readonly #gate: PollGate | undefined;
  readonly #conns = new Set<Connection>();
  /** With a token: open connections that have not authenticated yet. */
  #unauth = 0;
  #nextId = 0;
  #stopping = false;
  #refusalLoggedAt = -Infinity;
  #refusedUnlogged = 0;
  readonly #loop: Promise<void>;
  readonly #sweeper: ReturnType<typeof setInterval>;
  /** The connections' limits, with the one `--accept-hold` timer they share. */
  readonly #limits: ConnectionLimits;

  constructor(socket: SocketListener, opts: ListenOptions, events: ListenEvents, gate?: PollGate) {
    this.#socket = socket;
    this.addr = socket.addr as Deno.NetAddr; // a TCP listener's address
    // A TLS connection is admitted (or closed at once) before its handshake, which holds a slot.
    this.#tls = isTls(socket) ? socket : undefined;
    if (this.#tls) this.#tls.admit = () => this.#refusal() === undefined;
    this.#opts = opts;
    this.#limits = { maxLine: opts.maxLine, maxOutput: opts.maxOutput, hold: new ReplyHold(opts.acceptHoldMs ?? 0) };
    this.#events = events;
    this.#gate = gate;
    const limits = [opts.idleTimeoutMs, opts.tokenRequired ? opts.authTimeoutMs : 0].filter((t) => t > 0);
    const tick = limits.length > 0 ? Math.min(1000, Math.max(20, Math.round(Math.min(...limits) / 4))) : 1000;
    this.#sweeper = setInterval(() => this.#sweep(), tick);
    this.#loop = this.#accept();
  }

  /** TLS connections still in their handshake: they hold a slot, and a deadline. */
  get #handshaking(): number {
    return this.#tls ? this.#tls.handshaking : 0;
  }

  /** Why a new connection would be refused now, or `undefined`. */
  #refusal(): string | undefined {
    const { maxConns, maxUnauthConns, tokenRequired } = this.#opts;
    if (this.#conns.size + this.#handshaking >= maxConns) {
      return `the server has its maximum of ${maxConns} connections (--max-conns); retry later`;
    }
    if (tokenRequired && this.#unauth + this.#handshaking >= maxUnauthConns) {
      return `${maxUnauthConns} connections are waiting to authenticate (--max-unauth-conns); retry later`;
    }
    return undefined;
  }

  /** Open connections. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Connections accepted since the start. */
  get accepted(): number {
    return this.#nextId;
  }

  /** Stops accepting; open connections stay. */
  async stopAccepting(): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      try {
        this.#socket.close();
      } catch {
        // already closed
      }
    }
    await this.#loop;
  }

  /**
   * Closes every connection once its queued replies are written, waiting at most `waitMs` for them
   * (final replies wait for the store to have their tasks' ends: a store that cannot be reached
   * would hold them forever). Returns how many connections were closed with replies unwritten.
   */
  async close(waitMs = Infinity): Promise<number> {
    await this.stopAccepting();
    clearInterval(this.#sweeper);
    this.#limits.hold?.close();
    const conns = [...this.#conns];
    const flushed = Promise.all(conns.map((c) => c.closeWhenFlushed(true)));
    if (waitMs === Infinity) {
      await flushed;
      return 0;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), waitMs)));
    const outcome = await Promise.race([flushed, late]);
    clearTimeout(timer);
    if (outcome !== "late") return 0;
    const cut = conns.filter((c) => c.writable);
    for (const c of cut) c.close();
    return cut.length;
  }

  async #accept(): Promise<void> {
    let backoff = 10;
    while (!this.#stopping) {
      let tcp: StreamConn;
      try {
        tcp = await this.#socket.accept();
      } catch (e) {
        if (this.#stopping || e instanceof Deno.errors.BadResource) return;
        const message = e instanceof Error ? e.message : String(e);
        if (!EXHAUSTION.test(message)) {
          // One connection that died before it was accepted: skip it, at once.
          log.debug("a connection was lost before it was accepted: {error}", { error: message });
          continue;
        }
        log.error("cannot accept a connection: {error}; retrying in {ms} ms", { error: message, ms: backoff });
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 1000);
        continue;
      }
      backoff = 10;
      // TLS connections were admitted before their handshake (TlsListener.admit); plain ones are here.
      const refusal = this.#tls ? undefined : this.#refusal();
      if (refusal) this.#refuse(tcp, refusal);
      else this.#open(tcp);
    }
  }

  /** Refused at a limit: told why where that costs nothing, and closed at once. */
  #refuse(tcp: StreamConn, why: string): void {
    this.#events.refused();
    const now = performance.now();
    if (now - this.#refusalLoggedAt >= 1000) {
      // One line a second at most: a flood of connections must not become a flood of log lines.
      const remote = tcp.remoteAddr as Deno.NetAddr;
      log.warn("connection from {remote} refused: {why} ({more} more refused in the last second)", {
        remote: `${remote.hostname}:${remote.port}`,
        why,
        more: this.#refusedUnlogged,
      });
      this.#refusalLoggedAt = now;
      this.#refusedUnlogged = 0;
    } else {
      this.#refusedUnlogged++;
    }
    const line = reply.error("text", undefined, "too_many_connections", why) + "\n";
    // One try to write, without waiting: the fd is closed right after.
    tcp.write(new TextEncoder().encode(line)).catch(() => {}).finally(() => {
      try {
        tcp.close();
      } catch {
        // closed
      }
    });
  }

  #open(tcp: StreamConn): void {
    if ("setNoDelay" in tcp && typeof tcp.setNoDelay === "function") tcp.setNoDelay(true);
    const conn = new Connection(++this.#nextId, tcp, this.#limits, {
      line: (c, event) => this.#events.line(c, event),
      ended: (c) => {
        // A client that half-closed (sent EOF) still gets the final replies of its tasks: the
        // connection closes itself when the last one is written (Connection.taskEnded).
        if (c.outstanding === 0 || !c.writable) c.closeWhenFlushed();
      },
      closed: (c) => {
        this.#conns.delete(c);
        if (this.#opts.tokenRequired && !c.authorized) this.#unauth--;
        log.debug("connection {conn} closed", { conn: c.id });
      },
      authorized: () => this.#unauth--,
      ...(this.#events.beforeWrite ? { beforeWrite: this.#events.beforeWrite } : {}),
      overflowed: (c) =>
        log.warn(
          "connection {conn} from {remote} closed: more than --max-output {max} of replies wait for a client that does not read; its tasks go on, their results stay available to /status",
          { conn: c.id, remote: c.remote, max: formatSize(this.#opts.maxOutput) },
        ),
    }, this.#gate);
    this.#conns.add(conn);
    if (this.#opts.tokenRequired) this.#unauth++;
    log.debug("connection {conn} from {remote} opened", { conn: conn.id, remote: conn.remote });
    conn.serve();
  }

  /**
   * Closes connections past a deadline, saying why first: not authenticated within
   * `--auth-timeout`, or silent for `--idle-timeout` with no task outstanding.
   */
  #sweep(): void {
    const now = performance.now();
    const { idleTimeoutMs, authTimeoutMs, tokenRequired } = this.#opts;
    for (const c of this.#conns) {
      if (tokenRequired && authTimeoutMs > 0 && !c.authorized && now - c.openedAt >= authTimeoutMs) {
        c.send(reply.error(
          "text",
          undefined,
          "unauthorized",
          `no /auth within ${formatDuration(authTimeoutMs)} (--auth-timeout); closing`,
        ));
        c.closeWhenFlushed();
        continue;
      }
      if (idleTimeoutMs <= 0 || c.outstanding > 0 || c.readEnded || now - c.lastActivity < idleTimeoutMs) continue;
      c.send(
        reply.error(
          "text",
          undefined,
          "idle_timeout",
          `no request for ${formatDuration(idleTimeoutMs)} (--idle-timeout); closing`,
        ),
      );
      c.closeWhenFlushed();
    }
  }
}

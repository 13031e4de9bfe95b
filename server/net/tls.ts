/**
 * The TLS listener: `node:tls` rather than `Deno.listenTls`, for one reason that matters to a
 * server on an open port. A `Deno.TlsConn` whose peer never sends a ClientHello cannot be closed:
 * `close()` cancels the pending handshake but keeps the socket (measured with Deno 2.9: the peer
 * reads nothing, and the process holds one more fd, for as long as the peer likes). `node:tls`
 * bounds the handshake (`handshakeTimeout`) and its sockets can be destroyed.
 *
 * Connections come out of {@linkcode TlsListener.accept} only once their handshake is done, as a
 * {@linkcode StreamConn} — the `read`/`write`/`close` subset of `Deno.Conn` that a connection uses.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { AddressInfo } from "node:net";
import tls from "node:tls";

/** The part of `Deno.Conn` a connection uses: plain TCP connections are `Deno.Conn`s as they are. */
export interface StreamConn {
  readonly remoteAddr: Deno.Addr;
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** What the accept loop takes connections from: a `Deno.Listener`, or a {@linkcode TlsListener}. */
export interface SocketListener {
  readonly addr: Deno.Addr;
  accept(): Promise<StreamConn>;
  close(): void;
}

/** Above this many bytes read and not yet taken, the socket stops reading (TCP pushes back). */
const HIGH_WATER = 256 * 1024;

/** A TLS socket as a {@linkcode StreamConn}. */
class TlsConn implements StreamConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly #sock: tls.TLSSocket;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(sock: tls.TLSSocket) {
    this.#sock = sock;
    sock.setNoDelay(true);
    this.remoteAddr = { transport: "tcp", hostname: sock.remoteAddress ?? "unknown", port: sock.remotePort ?? 0 };
    sock.on("data", (b: Uint8Array) => {
      this.#chunks.push(b);
      this.#buffered += b.length;
      if (this.#buffered > HIGH_WATER) sock.pause();
      this.#wakeUp();
    });
    const end = (e?: Error) => {
      this.#ended = true;
      this.#error ??= e;
      this.#wakeUp();
    };
    sock.on("end", () => end());
    sock.on("close", () => end());
    sock.on("error", (e: Error) => end(e));
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) {
        if (this.#error) throw this.#error;
        return null;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    const head = this.#chunks[0];
    const n = Math.min(p.length, head.length);
    p.set(head.subarray(0, n));
    if (n === head.length) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
    this.#buffered -= n;
    if (this.#buffered <= HIGH_WATER / 4 && this.#sock.isPaused()) this.#sock.resume();
    return n;
  }

  /** Resolves when the bytes are handed to the kernel: the caller's next write waits for it. */
  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.#sock.destroyed) return reject(new Deno.errors.BrokenPipe("the connection is closed"));
      this.#sock.write(p, (e?: Error | null) => (e ? reject(e) : resolve(p.length)));
    });
  }

  close(): void {
    this.#sock.destroy();
  }
}

/**
 * A TLS listener whose handshakes have a deadline.
 *
 * @example
 * ```ts ignore
 * const listener = await TlsListener.open({ hostname: "127.0.0.1", port: 0, cert, key, handshakeTimeoutMs: 10_000 });
 * const conn = await listener.accept(); // handshake done
 * ```
 */
export class TlsListener implements SocketListener {
  readonly addr: Deno.NetAddr;
  readonly #server: tls.Server;
  readonly #ready: StreamConn[] = [];
  #waiting: PromiseWithResolvers<StreamConn> | undefined;
  #handshaking = 0;
  #closed = false;

  private constructor(server: tls.Server, addr: Deno.NetAddr) {
    this.#server = server;
    this.addr = addr;
  }

  /** Connections still in their handshake. */
  get handshaking(): number {
    return this.#handshaking;
  }

  /**
   * Listens.
   *
   * @throws the error of `listen` (`EADDRINUSE`, …) or of a certificate or key that cannot be used.
   */
  static open(o: {
    hostname: string;
    port: number;
    cert: string;
    key: string;
    handshakeTimeoutMs: number;
  }): Promise<TlsListener> {
    // Checked now: node:tls here reads them only at the first handshake.
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(o.cert);
    } catch (e) {
      throw new Error(`the certificate is not a PEM certificate (${e instanceof Error ? e.message : e})`);
    }
    let key;
    try {
      key = createPrivateKey(o.key);
    } catch (e) {
      throw new Error(`the key is not a PEM private key (${e instanceof Error ? e.message : e})`);
    }
    if (!certificate.checkPrivateKey(key)) throw new Error("the key is not the certificate's private key");
    const server = tls.createServer({ cert: o.cert, key: o.key, handshakeTimeout: o.handshakeTimeoutMs });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(o.port, o.hostname, () => {
        server.off("error", reject);
        const a = server.address() as AddressInfo; // a TCP server's address is always an AddressInfo
        const listener = new TlsListener(server, { transport: "tcp", hostname: a.address, port: a.port });
        listener.#wire();
        resolve(listener);
      });
    });
  }

  /** Asked about each new TCP connection, before its handshake: false closes it at once (a limit is reached). */
  admit: () => boolean = () => true;

  #wire(): void {
    // Handshakes in progress, by peer address and port: each is counted down once, when it is done
    // or when its socket closes, whichever comes first.
    const pending = new Map<string, () => void>();
    const key = (s: { remoteAddress?: string; remotePort?: number }) => `${s.remoteAddress}:${s.remotePort}`;
    this.#server.on("connection", (raw) => {
      if (this.#closed || !this.admit()) return raw.destroy();
      const k = key(raw);
      this.#handshaking++;
      const done = () => {
        if (pending.get(k) !== done) return;
        pending.delete(k);
        this.#handshaking--;
      };
      pending.set(k, done);
      raw.once("close", done);
    });
    this.#server.on("secureConnection", (sock: tls.TLSSocket) => {
      pending.get(key(sock))?.();
      this.#hand(new TlsConn(sock));
    });
    // A handshake that failed, or took longer than handshakeTimeout: its socket goes, fd and all.
    this.#server.on("tlsClientError", (_e: Error, sock: tls.TLSSocket) => sock.destroy());
  }

  #hand(conn: StreamConn): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting.resolve(conn);
    else this.#ready.push(conn);
  }

  accept(): Promise<StreamConn> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the listener is closed"));
    const next = this.#ready.shift();
    if (next) return Promise.resolve(next);
    this.#waiting = Promise.withResolvers<StreamConn>();
    return this.#waiting.promise;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    this.#waiting?.reject(new Deno.errors.BadResource("the listener is closed"));
    this.#waiting = undefined;
    for (const c of this.#ready.splice(0)) c.close();
  }
}

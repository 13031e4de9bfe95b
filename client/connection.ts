/**
 * The client's TCP connection: connects with errors a person can act on, sends lines, and hands
 * each received line to a callback. A plain connection that gets TLS records back (the port
 * serves TLS) delivers no lines: it closes and says so in {@linkcode ClientConnection.speaksTls}.
 *
 * @module
 */
import { commandFor } from "../cli/invocation.ts";
import { type ClientMessages, MESSAGES } from "./messages.ts";

/** The server could not be reached: the message names the address and what to do. */
export class ConnectError extends Error {
  override name = "ConnectError";
}

const encoder = new TextEncoder();

/**
 * A line-oriented connection to an asynctask server.
 *
 * @example
 * ```ts ignore
 * const conn = await ClientConnection.connect("127.0.0.1", 9501, 5000);
 * conn.onLine = (line) => console.log(line);
 * await conn.send(["/ping"]);
 * await conn.closed;
 * ```
 */
export class ClientConnection {
  /** Called for each line received, without its line ending. */
  onLine: (line: string) => void = () => {};
  /** Resolves when the server closes the connection (or it breaks). */
  readonly closed: Promise<void>;
  #closedByUs = false;
  #speaksTls = false;

  private constructor(private conn: Deno.Conn, private readonly plain: boolean) {
    this.closed = this.#read();
  }

  /**
   * Connects, or throws {@linkcode ConnectError} with a message such as "cannot connect to
   * 127.0.0.1:9501: connection refused — is the server running? Start it with `./deno task serve
   * --port 9501`" (the command as the user runs asynctask: see `cli/invocation.ts`), in the words
   * of `msgs`.
   */
  static async connect(
    host: string,
    port: number,
    timeoutMs: number,
    tls?: { caCerts?: string[] },
    msgs: ClientMessages = MESSAGES.en,
  ): Promise<ClientConnection> {
    const where = `${host}:${port}`;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const attempt: Promise<Deno.Conn> = tls
      ? Deno.connectTls({ hostname: host, port, ...(tls.caCerts ? { caCerts: tls.caCerts } : {}) }).then(
        async (c) => (await c.handshake(), c),
      )
      : Deno.connect({ hostname: host, port, transport: "tcp" }).then((c) => (c.setNoDelay(true), c));
    try {
      const conn = await Promise.race([
        attempt,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Deno.errors.TimedOut("timed out")), timeoutMs);
        }),
      ]);
      return new ClientConnection(conn, !tls);
    } catch (e) {
      attempt.then((c) => c.close(), () => {});
      if (e instanceof Deno.errors.ConnectionRefused) {
        const serve = commandFor("serve", `${host === "127.0.0.1" ? "" : `--host ${host} `}--port ${port}`);
        throw new ConnectError(msgs.connectRefused(where, serve));
      }
      if (e instanceof Deno.errors.TimedOut) throw new ConnectError(msgs.connectTimeout(where, timeoutMs));
      const err = e instanceof Error ? e : new Error(String(e));
      if (tls && /certificate|handshake|tls|InvalidData|UnknownIssuer/i.test(err.message + err.name)) {
        throw new ConnectError(msgs.connectTls(where, err.message));
      }
      if (/lookup|resolve|Name or service/i.test(err.message)) throw new ConnectError(msgs.unknownHost(where, host));
      throw new ConnectError(msgs.connectFailed(where, err.message));
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends lines (each gets its `\n`) in one write. */
  async send(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    const data = encoder.encode(lines.join("\n") + "\n");
    for (let at = 0; at < data.length;) at += await this.conn.write(data.subarray(at));
  }

  /**
   * Whether the server answered this plain-TCP connection with a TLS record (an alert, say): the
   * port serves TLS, and the client needs `--tls`. No line was delivered then.
   */
  get speaksTls(): boolean {
    return this.#speaksTls;
  }

  /** Whether the connection is still open. */
  get open(): boolean {
    return !this.#closedByUs;
  }

  /** Closes the connection. */
  close(): void {
    if (this.#closedByUs) return;
    this.#closedByUs = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  async #read(): Promise<void> {
    const firstBytes = this.plain
      ? (bytes: Uint8Array) => {
        if (!looksLikeTls(bytes)) return true;
        this.#speaksTls = true;
        return false;
      }
      : undefined;
    await readLines(this.conn, (line) => this.onLine(line), firstBytes);
    this.close();
  }
}

/**
 * Whether bytes received look like the start of a TLS record: an alert (0x15) or a handshake
 * (0x16), then major version 3. No line of the protocol starts so: it is UTF-8 text.
 *
 * @example
 * ```ts
 * import { looksLikeTls } from "./connection.ts";
 * import assert from "node:assert/strict";
 * assert.equal(looksLikeTls(new Uint8Array([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])), true);
 * assert.equal(looksLikeTls(new TextEncoder().encode("PONG\n")), false);
 * ```
 */
export function looksLikeTls(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && (bytes[0] === 0x15 || bytes[0] === 0x16) && bytes[1] === 0x03;
}

/**
 * Reads `conn` to its end, calling `onLine` for each line (without `\n` or `\r\n`); a last line
 * without an ending is delivered too. Resolves at EOF, on a reset, or when the connection is closed.
 * `firstBytes`, if given, sees the first bytes received before any line is cut from them; when it
 * returns false, reading stops there and nothing is delivered.
 *
 * @example
 * ```ts ignore
 * await readLines(await Deno.connect({ port: 9501 }), (line) => console.log(line));
 * ```
 */
export async function readLines(
  conn: Deno.Conn,
  onLine: (line: string) => void,
  firstBytes?: (bytes: Uint8Array) => boolean,
): Promise<void> {
  const decoder = new TextDecoder();
  const buf = new Uint8Array(64 * 1024);
  let rest = "";
  // The first bytes, held until there are two of them (enough to tell a TLS record), when asked.
  let head: Uint8Array | undefined = firstBytes ? new Uint8Array(0) : undefined;
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      let chunk = buf.subarray(0, n);
      if (head !== undefined && firstBytes) {
        const joined = new Uint8Array(head.length + n);
        joined.set(head);
        joined.set(chunk, head.length);
        if (joined.length < 2) {
          head = joined;
          continue;
        }
        head = undefined;
        if (!firstBytes(joined)) return;
        chunk = joined;
      }
      deliver(chunk);
    }
  } catch {
    // reset, or closed by us
  }
  if (head !== undefined && head.length > 0) deliver(head);
  if (rest) onLine(rest);

  function deliver(bytes: Uint8Array): void {
    const lines = (rest + decoder.decode(bytes, { stream: true })).split("\n");
    rest = lines.pop()!;
    for (const line of lines) onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
  }
}

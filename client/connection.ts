/**
 * The client's TCP connection: connects with errors a person can act on, sends lines, and hands
 * each received line to a callback.
 *
 * @module
 */

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

  private constructor(private conn: Deno.Conn) {
    this.closed = this.#read();
  }

  /**
   * Connects, or throws {@linkcode ConnectError} with a message such as
   * "cannot connect to 127.0.0.1:9501: connection refused — is `asynctask serve` running?".
   */
  static async connect(
    host: string,
    port: number,
    timeoutMs: number,
    tls?: { caCerts?: string[] },
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
      return new ClientConnection(conn);
    } catch (e) {
      attempt.then((c) => c.close(), () => {});
      if (e instanceof Deno.errors.ConnectionRefused) {
        throw new ConnectError(
          `cannot connect to ${where}: connection refused — is \`asynctask serve\` running? Start it with \`asynctask serve --port ${port}\``,
        );
      }
      if (e instanceof Deno.errors.TimedOut) {
        throw new ConnectError(
          `cannot connect to ${where}: no answer within ${timeoutMs} ms — check the address, and any firewall between`,
        );
      }
      const msg = (e as Error).message;
      if (tls && /certificate|handshake|tls|InvalidData|UnknownIssuer/i.test(msg + (e as Error).name)) {
        throw new ConnectError(
          `cannot connect to ${where} with TLS: ${msg} — is the server serving TLS, and does --ca name the certificate authority that signed its certificate?`,
        );
      }
      if (/lookup|resolve|Name or service/i.test(msg)) {
        throw new ConnectError(`cannot connect to ${where}: unknown host "${host}" — check --host`);
      }
      throw new ConnectError(`cannot connect to ${where}: ${msg} — check --host and --port`);
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
    await readLines(this.conn, (line) => this.onLine(line));
    this.close();
  }
}

/**
 * Reads `conn` to its end, calling `onLine` for each line (without `\n` or `\r\n`); a last line
 * without an ending is delivered too. Resolves at EOF, on a reset, or when the connection is closed.
 *
 * @example
 * ```ts ignore
 * await readLines(await Deno.connect({ port: 9501 }), (line) => console.log(line));
 * ```
 */
export async function readLines(conn: Deno.Conn, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  const buf = new Uint8Array(64 * 1024);
  let rest = "";
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      const lines = (rest + decoder.decode(buf.subarray(0, n), { stream: true })).split("\n");
      rest = lines.pop()!;
      for (const line of lines) onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
    }
  } catch {
    // reset, or closed by us
  }
  if (rest) onLine(rest);
}

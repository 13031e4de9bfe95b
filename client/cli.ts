/**
 * `asynctask client`: interactive when stdin is a terminal (a prompt for a phone number, as in Swoole's example),
 * otherwise a scriptable sender: `--send` payloads, or lines piped on stdin, every final reply
 * awaited, and an exit code that says how it went.
 *
 * @module
 */
import { type FlagSpec, HELP_FLAG, parseFlags, readFlagFile, renderHelp } from "../cli/flags.ts";
import { commandFor } from "../cli/invocation.ts";
import { ClientConnection, ConnectError } from "./connection.ts";
import { runInteractive } from "./interactive.ts";
import { type ClientMessages, localMessages, MESSAGES } from "./messages.ts";
import { parseReply } from "./replies.ts";
import { requestKind, type RequestOptions, toRequest } from "./requests.ts";
import { Session } from "./session.ts";

/** The flags of `asynctask client`. */
export const CLIENT_FLAGS: readonly FlagSpec[] = [
  { name: "host", kind: "string", default: "127.0.0.1", valueName: "addr", help: "server address" },
  { name: "port", kind: "int", default: 9501, min: 1, max: 65535, help: "server port" },
  {
    name: "send",
    kind: "list",
    valueName: "payload",
    example: "13800138000",
    help: "send this payload (repeatable); stdin is then not read",
  },
  {
    name: "task",
    kind: "string",
    valueName: "name",
    example: "echo",
    help: "task for payloads (default: the server's --task); a JSON object that is not a request is its data",
  },
  {
    name: "window",
    kind: "int",
    default: 1000,
    min: 1,
    max: 1_000_000,
    help: "most requests and tasks in flight at once when sending many (flow control)",
  },
  { name: "json", kind: "boolean", help: "send JSON requests and print the raw JSON replies" },
  {
    name: "connect-timeout",
    kind: "duration",
    default: 5000,
    min: 1,
    help: "how long to wait for the server to answer",
  },
  {
    name: "token",
    kind: "string",
    env: "ASYNCTASK_TOKEN",
    valueName: "secret",
    help: "authenticate with this token first (prefer the environment variable)",
  },
  { name: "tls", kind: "boolean", help: "connect with TLS" },
  {
    name: "ca",
    kind: "string",
    valueName: "ca.pem",
    help: "trust this PEM certificate authority for --tls (e.g. a self-signed cert)",
  },
  { name: "quiet", kind: "boolean", short: "q", help: "print only failures and the summary" },
  HELP_FLAG,
];

/** The `--help` text of `asynctask client`, its usage line in the words the user runs it with (`./deno task client`). */
export const clientHelp = (): string =>
  renderHelp(
    commandFor("client", "[flags]"),
    "Talks to an asynctask server. On a terminal it asks for a phone number (like Swoole's example\n" +
      "client), sends each line you type, and prints ACCEPTED at once and DONE/FAILED when the task\n" +
      "ends; Ctrl-D waits for outstanding results, then quits. Otherwise it sends each --send payload,\n" +
      "or each line of stdin, waits for every result, and exits 0 when all succeeded, 1 when any failed\n" +
      "or was refused, 2 when it could not connect. With --task, a JSON object that is not a\n" +
      'request is sent as that task\'s data: --task email --send \'{"to":"a@example.com","subject":"hi"}\'.\n\n' +
      "Lines starting with / are commands: /task <name> <payload>, /status <id>, /stats, /ping, /quit.\n" +
      "On a terminal it speaks Chinese where LC_ALL, LC_MESSAGES or LANG starts with zh.",
    CLIENT_FLAGS,
  );

/**
 * Runs `asynctask client`; returns the exit code.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runClient(["--send", "13800138000"]));
 * ```
 */
export async function runClient(args: string[]): Promise<number> {
  const flags = parseFlags("client", CLIENT_FLAGS, args);
  if (flags.bool("help")) {
    console.log(clientHelp());
    return 0;
  }
  const prefix = `${commandFor("client")}:`;
  const host = flags.str("host")!;
  const port = flags.num("port");
  const opts: RequestOptions = { task: flags.str("task"), json: flags.bool("json") };
  const payloads = flags.list("send");
  const interactive = payloads.length === 0 && Deno.stdin.isTerminal();
  // A person at a terminal is told things in their language; scripts read English.
  const msgs = interactive ? localMessages() : MESSAGES.en;
  const ca = flags.str("ca");
  const tls = flags.bool("tls") || ca !== undefined
    ? { caCerts: ca ? [readFlagFile(ca, "--ca")] : undefined }
    : undefined;
  let conn: ClientConnection;
  try {
    conn = await ClientConnection.connect(host, port, flags.num("connect-timeout"), tls, msgs);
  } catch (e) {
    if (!(e instanceof ConnectError)) throw e;
    console.error(`${prefix} ${e.message}`);
    return 2;
  }
  const token = flags.str("token");
  const address = `${host}:${port}`;
  const again = commandFor(
    "client",
    [host === "127.0.0.1" ? "" : `--host ${host}`, `--port ${port}`, tls ? "--tls" : "", ca ? `--ca ${ca}` : ""]
      .filter((a) => a !== "").join(" "),
  );
  if (interactive) return await runInteractive(conn, { ...opts, token, address, again, msgs, prefix });
  const input = payloads.length > 0 ? payloads : Deno.stdin.readable;
  return await runBatch(conn, input, opts, {
    quiet: flags.bool("quiet"),
    window: flags.num("window"),
    token,
    address,
    again,
    prefix,
    msgs,
  });
}

/**
 * Sends every input line, prints the replies, and waits for every final reply. At most `window`
 * requests and tasks are in flight: a long input waits for results instead of flooding the
 * server's queue.
 */
async function runBatch(
  conn: ClientConnection,
  input: string[] | ReadableStream<Uint8Array>,
  opts: RequestOptions,
  { quiet, window, token, address, again, prefix, msgs }: {
    quiet: boolean;
    window: number;
    token?: string;
    address: string;
    /** The command that connects to the same server, for hints. */
    again: string;
    prefix: string;
    msgs: ClientMessages;
  },
): Promise<number> {
  const session = new Session();
  const out = new TextEncoder();
  conn.onLine = (line) => {
    const reply = parseReply(line);
    session.received(reply);
    if (!quiet || reply.type === "failed" || reply.type === "error") Deno.stdout.writeSync(out.encode(line + "\n"));
  };
  const sendAll = async (lines: string[]) => {
    const requests = lines.filter((l) => l.trim() !== "").map((l) => toRequest(l, opts));
    for (let at = 0; at < requests.length;) {
      await Promise.race([session.whenRoom(window), conn.closed]);
      if (!conn.open) throw new Error("closed");
      const batch = requests.slice(at, at + Math.max(1, window - session.inFlight));
      for (const request of batch) session.sent(requestKind(request));
      at += batch.length;
      await conn.send(batch);
    }
  };
  try {
    if (token !== undefined) await sendAll([`/auth ${token}`]);
    if (Array.isArray(input)) {
      await sendAll(input);
    } else {
      const decoder = new TextDecoder();
      let rest = "";
      for await (const chunk of input) {
        const lines = (rest + decoder.decode(chunk, { stream: true })).split("\n");
        rest = lines.pop()!;
        await sendAll(lines);
      }
      await sendAll([rest]);
    }
  } catch {
    // The server closed while we were sending: reported below.
  }
  await Promise.race([session.whenSettled(), conn.closed]);
  conn.close();
  if (conn.speaksTls) {
    console.error(`${prefix} ${msgs.speaksTls(address)}`);
    return 2;
  }
  if (session.refusedCodes.has("unauthorized")) {
    console.error(`${prefix} ${token === undefined ? msgs.tokenNeeded(address) : msgs.tokenRefused}`);
  } else if (!session.settled) {
    const ids = [...session.outstanding];
    const why = ids.length > 0
      ? msgs.unfinished(ids.length, ids.slice(0, 10), ids.length > 10, again)
      : msgs.serverClosed;
    console.error(`${prefix} ${why}`);
  }
  if (session.exitCode !== 0 || quiet) console.error(`${prefix} ${session.summary(msgs)}`);
  return session.exitCode;
}

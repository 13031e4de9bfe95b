/**
 * The interactive client, for a person at a terminal: the "enter a phone number" prompt of Swoole's example,
 * with replies printed above the line being typed (the typed text is redrawn, never broken), a
 * live line per task that reports progress (replaced by its final reply), and a Ctrl-D that waits
 * for outstanding results before it quits.
 *
 * It speaks the person's language (see `messages.ts`), shows JSON replies in the same form as text
 * ones and `/stats` as a block (see `render.ts`), and tells mistakes it can see itself — an unknown
 * command, `/status` without an id, JSON that does not parse — without sending them: only what the
 * server refuses counts against the exit code, and of that only refused tasks.
 *
 * @module
 */
import process from "node:process";
import { createInterface } from "node:readline";
import { suggest } from "../cli/flags.ts";
import type { ClientConnection } from "./connection.ts";
import type { ClientMessages } from "./messages.ts";
import { COLORS, displayWidth, progressLine, renderReply } from "./render.ts";
import { parseReply } from "./replies.ts";
import { COMMANDS, type LocalMistake, localMistake, requestKind, type RequestOptions, toRequest } from "./requests.ts";
import { Session } from "./session.ts";

/** Most live progress lines shown at once (the others are counted in one line). */
const MAX_LIVE_LINES = 8;

/** The `/help` text: the intro, then the commands with their meaning in aligned columns. */
function helpText(msgs: ClientMessages): string {
  const width = Math.max(...msgs.help.rows.map(([left]) => displayWidth(left)));
  const rows = msgs.help.rows.map(([left, right]) => `  ${left}${" ".repeat(width - displayWidth(left))}   ${right}`);
  return [msgs.help.intro, ...rows].join("\n");
}

/** What to say about a line the client did not send. */
export function mistakeMessage(m: LocalMistake, msgs: ClientMessages): string {
  switch (m.kind) {
    case "usage":
      return msgs.usage(m.command);
    case "no_argument":
      return msgs.takesNoArgument(m.command);
    case "unknown_command":
      return msgs.unknownCommand(m.command, suggest(m.command, Object.keys(COMMANDS)));
    case "bad_json":
      return msgs.badJson(m.why);
  }
}

/**
 * Runs the interactive client on `conn` until Ctrl-D, Ctrl-C, `/quit` or the server closing.
 * Returns the exit code: 0 when every task succeeded, 1 when a task failed, was refused or has no
 * result, 2 when the port turned out to speak TLS, 130 after Ctrl-C.
 */
export async function runInteractive(
  conn: ClientConnection,
  opts: RequestOptions & {
    address: string;
    token?: string;
    msgs: ClientMessages;
    /** The error prefix, `./deno task client:` or `asynctask client:` (as the user typed the command). */
    prefix: string;
    /** The command that connects to the same server again, for hints. */
    again: string;
  },
): Promise<number> {
  const { msgs } = opts;
  const session = new Session({ strict: false });
  const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
  const prompt = msgs.prompt(opts.task);
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt });
  let quitting = false;

  // Below the printed replies and above the prompt: one live line per task that reported progress.
  const live = new Map<number, string>();
  let drawn = 0;
  /** Erases the live lines and the prompt line; the cursor is left at the start of an empty line. */
  const clearLive = () => {
    let s = "\r\x1b[2K";
    for (let i = 0; i < drawn; i++) s += "\x1b[1A\x1b[2K";
    process.stdout.write(s);
    drawn = 0;
  };
  const drawLive = () => {
    const shown = [...live.values()].slice(-MAX_LIVE_LINES);
    const more = live.size - shown.length;
    if (more > 0) shown.unshift(`  ${msgs.moreInProgress(more)}`);
    if (shown.length > 0) process.stdout.write(shown.join("\n") + "\n");
    drawn = shown.length;
    if (!quitting) rl.prompt(true);
  };

  /** Prints text above the live lines and the prompt, and redraws them with what is being typed. */
  const print = (text: string) => {
    clearLive();
    process.stdout.write(`${text}\n`);
    drawLive();
  };

  conn.onLine = (line) => {
    const reply = parseReply(line);
    session.received(reply);
    if (reply.type === "progress" && reply.taskId !== undefined) {
      live.set(reply.taskId, progressLine(line, process.stdout.columns || 80, color, msgs));
      clearLive();
      drawLive();
      return;
    }
    if (reply.taskId !== undefined && (reply.type === "done" || reply.type === "failed")) live.delete(reply.taskId);
    const [first, ...rest] = renderReply(line, { raw: opts.json, msgs }).split("\n");
    const c = color ? COLORS[reply.type] : undefined;
    print([c ? `${c}${first}\x1b[0m` : first, ...rest].join("\n"));
  };

  print(`${msgs.connected(opts.address, opts.task)}`);

  if (opts.token !== undefined) {
    session.sent("command");
    conn.send([toRequest(`/auth ${opts.token}`, opts)]).catch(() => {});
  } else {
    // A blank line: the protocol ignores it, a TLS port answers it with an alert, so a wrong
    // port is told before anything is typed.
    conn.send([""]).catch(() => {});
  }
  const ended = Promise.withResolvers<"eof" | "interrupt">();
  rl.on("line", (line: string) => {
    const text = line.trim();
    if (text === "") {
      rl.prompt();
      return;
    }
    if (text === "/help") {
      print(helpText(msgs));
      return;
    }
    const mistake = localMistake(text);
    if (mistake) {
      print(mistakeMessage(mistake, msgs));
      return;
    }
    // `/status\t17` is `/status 17` to a person; the server splits a command from its argument at a space.
    const request = toRequest(text.replace(/^(\/\S+)\s+/, "$1 "), opts);
    session.sent(requestKind(request));
    conn.send([request]).catch(() => {});
    rl.prompt();
  });
  rl.on("SIGINT", () => ended.resolve("interrupt"));
  rl.on("close", () => ended.resolve("eof"));

  const why = await Promise.race([ended.promise, conn.closed.then(() => "closed" as const)]);
  if (why === "eof" && !session.settled) {
    quitting = true;
    print(msgs.waiting(session.outstanding.size + session.awaiting));
    const interrupted = Promise.withResolvers<void>();
    const onInt = () => interrupted.resolve();
    Deno.addSignalListener("SIGINT", onInt);
    await Promise.race([session.whenSettled(), conn.closed, interrupted.promise]);
    Deno.removeSignalListener("SIGINT", onInt);
  }
  quitting = true;
  const typed = rl.line;
  rl.close();
  conn.close();
  // Leave the shell a clean line: the prompt is erased (Ctrl-C keeps what was typed, marked ^C).
  clearLive();
  if (why === "interrupt") process.stdout.write(`${prompt}${typed}^C\n`);
  if (conn.speaksTls) {
    process.stderr.write(`${opts.prefix} ${msgs.speaksTls(opts.address)}\n`);
    return 2;
  }
  if (why === "closed") {
    const ids = [...session.outstanding];
    const said = ids.length > 0 ? msgs.unfinished(ids.length, ids.slice(0, 10), ids.length > 10, opts.again) : "";
    process.stdout.write(`${said || msgs.serverClosed}\n`);
  }
  process.stdout.write(`${session.summary(msgs)}\n`);
  return why === "interrupt" ? 130 : session.exitCode;
}

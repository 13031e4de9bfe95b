/**
 * The interactive client, for a person at a terminal: the seed's "enter a phone number" prompt,
 * with replies printed above the line being typed (the typed text is redrawn, never broken), a
 * live line per task that reports progress (replaced by its final reply), and a Ctrl-D that waits
 * for outstanding results before it quits.
 *
 * @module
 */
import process from "node:process";
import { createInterface } from "node:readline";
import type { ClientConnection } from "./connection.ts";
import { parseReply } from "./replies.ts";
import { type RequestOptions, toRequest } from "./requests.ts";
import { Session } from "./session.ts";

const COLORS: Record<string, string> = {
  accepted: "\x1b[36m",
  done: "\x1b[32m",
  failed: "\x1b[31m",
  error: "\x1b[31m",
  progress: "\x1b[33m",
};

const HELP = `Type a payload and Enter to send it (for the sms task: a phone number). Commands:
  /task <name> <payload>   send to another task (sms, echo, sleep, …)
  /status <id>             a task's state and result, also after a reconnect
  /stats                   the server's counters
  /ping                    check the server answers
  /quit                    close the connection
  Ctrl-D                   wait for outstanding results, then quit · Ctrl-C quits at once`;

/** Most live progress lines shown at once (the others are counted in one line). */
const MAX_LIVE_LINES = 8;

/**
 * Renders a `PROGRESS` reply (text or JSON) as a live line with a bar, cut to the terminal's width.
 *
 * @example
 * ```ts
 * import { progressLine } from "./interactive.ts";
 * console.log(progressLine("PROGRESS 17 40 dialing", 80, false)); // "  task 17 [████░░░░░░]  40% dialing"
 * ```
 */
export function progressLine(line: string, columns: number, color: boolean): string {
  let id: string, percent: number, message: string;
  if (line.startsWith("{")) {
    const o = JSON.parse(line) as { task_id?: number; progress?: number; message?: string };
    [id, percent, message] = [String(o.task_id), Number(o.progress ?? 0), o.message ?? ""];
  } else {
    const m = /^PROGRESS (\d+) (\d+)(?: (.*))?$/.exec(line);
    [id, percent, message] = m ? [m[1], Number(m[2]), m[3] ?? ""] : ["?", 0, line];
  }
  const filled = Math.round(Math.min(100, Math.max(0, percent)) / 10);
  const bar = `[${"█".repeat(filled)}${"░".repeat(10 - filled)}]`;
  const text = `  task ${id} ${bar} ${String(percent).padStart(3)}%${message ? ` ${message}` : ""}`;
  const cut = text.length > columns - 1 ? `${text.slice(0, Math.max(0, columns - 2))}…` : text;
  return color ? `${COLORS.progress}${cut}\x1b[0m` : cut;
}

/**
 * Runs the interactive client on `conn` until Ctrl-D, Ctrl-C, `/quit` or the server closing.
 * Returns the exit code, by the same rule as the scripted client.
 */
export async function runInteractive(
  conn: ClientConnection,
  opts: RequestOptions & { address: string; token?: string },
): Promise<number> {
  const session = new Session();
  const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
  const label = opts.task === undefined || opts.task === "sms" ? "phone number" : `${opts.task} payload`;
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: `${label}> ` });
  let quitting = false;

  // Below the printed replies and above the prompt: one live line per task that reported progress.
  const live = new Map<number, string>();
  let drawn = 0;
  const clearLive = () => {
    let s = "\r\x1b[2K";
    for (let i = 0; i < drawn; i++) s += "\x1b[1A\x1b[2K";
    process.stdout.write(s);
    drawn = 0;
  };
  const drawLive = () => {
    const shown = [...live.values()].slice(-MAX_LIVE_LINES);
    const more = live.size - shown.length;
    if (more > 0) shown.unshift(`  … and ${more} more task(s) in progress`);
    if (shown.length > 0) process.stdout.write(shown.join("\n") + "\n");
    drawn = shown.length;
    if (!quitting) rl.prompt(true);
  };

  /** Prints a line above the live lines and the prompt, and redraws them with what is being typed. */
  const print = (text: string) => {
    clearLive();
    process.stdout.write(`${text}\n`);
    drawLive();
  };

  conn.onLine = (line) => {
    const reply = parseReply(line);
    session.received(reply);
    if (reply.type === "progress" && reply.taskId !== undefined) {
      live.set(reply.taskId, progressLine(line, process.stdout.columns || 80, color));
      clearLive();
      drawLive();
      return;
    }
    if (reply.taskId !== undefined && (reply.type === "done" || reply.type === "failed")) live.delete(reply.taskId);
    const c = color ? COLORS[reply.type] : undefined;
    print(c ? `${c}${line}\x1b[0m` : line);
  };

  print(
    `connected to ${opts.address}. ${
      label === "phone number" ? "Enter a phone number to send an SMS" : `Enter a ${label}`
    }; /help for commands, Ctrl-D to quit.`,
  );

  if (opts.token !== undefined) {
    session.sent();
    conn.send([toRequest(`/auth ${opts.token}`, opts)]).catch(() => {});
  }
  const ended = Promise.withResolvers<"eof" | "interrupt">();
  rl.on("line", (line: string) => {
    const text = line.trim();
    if (text === "") {
      rl.prompt();
      return;
    }
    if (text === "/help") {
      print(HELP);
      return;
    }
    session.sent();
    conn.send([toRequest(text, opts)]).catch(() => {});
    rl.prompt();
  });
  rl.on("SIGINT", () => ended.resolve("interrupt"));
  rl.on("close", () => ended.resolve("eof"));

  const why = await Promise.race([ended.promise, conn.closed.then(() => "closed" as const)]);
  if (why === "eof" && !session.settled) {
    quitting = true;
    print(`waiting for ${session.outstanding.size} outstanding result(s)… (Ctrl-C to quit now)`);
    const interrupted = Promise.withResolvers<void>();
    const onInt = () => interrupted.resolve();
    Deno.addSignalListener("SIGINT", onInt);
    await Promise.race([session.whenSettled(), conn.closed, interrupted.promise]);
    Deno.removeSignalListener("SIGINT", onInt);
  }
  quitting = true;
  if (why === "closed") print("the server closed the connection");
  rl.close();
  conn.close();
  if (why === "interrupt") return 130;
  process.stdout.write(`${session.summary()}\n`);
  return session.exitCode;
}

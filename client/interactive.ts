/**
 * The interactive client, for a person at a terminal: the seed's "enter a phone number" prompt,
 * with replies printed above the line being typed (the typed text is redrawn, never broken), and a
 * Ctrl-D that waits for outstanding results before it quits.
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

  /** Prints a line above the prompt and redraws the prompt with what is being typed. */
  const print = (text: string) => {
    process.stdout.write(`\r\x1b[2K${text}\n`);
    if (!quitting) rl.prompt(true);
  };

  conn.onLine = (line) => {
    const reply = parseReply(line);
    session.received(reply);
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

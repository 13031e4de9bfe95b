/**
 * The client's own words — prompts, hints, the summary — in one table, one entry per language.
 * The wire protocol and the server's replies are never translated. A third language is one more
 * entry in {@linkcode MESSAGES}: {@linkcode languageFrom} picks any entry whose key starts the
 * locale (`LC_ALL`, `LC_MESSAGES`, then `LANG`, as POSIX orders them).
 *
 * @module
 */

/** The counts a summary reports. */
export interface SummaryCounts {
  accepted: number;
  done: number;
  failed: number;
  /** Tasks the server refused (`ERROR` to a task). */
  refused: number;
  /** Commands the server refused; shown only where they count (the scripted client). */
  commandsRefused: number;
  /** Accepted tasks with no final reply. */
  missing: number;
}

/** Details of a JSON reply that its text form lacks, shown after it. */
export interface ReplyMeta {
  id?: string | number;
  worker?: number;
  attempts?: number;
  ms?: number;
}

/** Everything the client says in its own words. */
export interface ClientMessages {
  /** The prompt before the typed line; `task` is the `--task` (absent: the server's default, the sms task). */
  prompt(task: string | undefined): string;
  /** The first line of the interactive client. */
  connected(address: string, task: string | undefined): string;
  /** The `/help` text: a first line, then rows of [what is typed, what it does]. */
  help: { intro: string; rows: [string, string][] };
  waiting(outstanding: number): string;
  serverClosed: string;
  summary(c: SummaryCounts): string;
  /** `task 17`, before a progress bar. */
  task(id: string): string;
  moreInProgress(n: number): string;
  /** A JSON reply's id, worker, attempts and run time. */
  replyMeta(m: ReplyMeta): string;
  // Mistakes told locally: nothing is sent.
  /** How a command is used: `/status` → `usage: /status <task id> …`. */
  usage(command: string): string;
  takesNoArgument(command: string): string;
  unknownCommand(command: string, suggestion: string | undefined): string;
  badJson(why: string): string;
  // Connecting.
  connectRefused(where: string, serveCommand: string): string;
  connectTimeout(where: string, ms: number): string;
  connectTls(where: string, why: string): string;
  unknownHost(where: string, host: string): string;
  connectFailed(where: string, why: string): string;
  /** A plain-TCP client got TLS records back. */
  speaksTls(where: string): string;
  tokenRefused: string;
  /** The server wants a token and none was given. */
  tokenNeeded(where: string): string;
  /** `client` is the command that connects again, to look the tasks up. */
  unfinished(n: number, ids: readonly number[], more: boolean, client: string): string;
}

const en: ClientMessages = {
  prompt: (task) => task === undefined || task === "sms" ? "phone number> " : `${task} payload> `,
  connected: (address, task) =>
    `connected to ${address}. ${
      task === undefined || task === "sms" ? "Enter a phone number to send an SMS" : `Enter a ${task} payload`
    }; /help for commands, Ctrl-D to quit.`,
  help: {
    intro: "Type a payload and Enter to send it (for the sms task: a phone number). Commands:",
    rows: [
      ["/task <name> <payload>", "send to another task (sms, echo, sleep, …)"],
      ["/status <id>", "a task's state and result, also after a reconnect"],
      ["/stats", "the server's counters"],
      ["/ping", "check the server answers"],
      ["/quit", "close the connection"],
      ["Ctrl-D", "wait for outstanding results, then quit · Ctrl-C quits at once"],
    ],
  },
  waiting: (n) => `waiting for ${n} outstanding result(s)… (Ctrl-C to quit now)`,
  serverClosed: "the server closed the connection",
  summary: (c) =>
    `${c.accepted} accepted, ${c.done} done, ${c.failed} failed, ${c.refused} refused` +
    (c.commandsRefused > 0 ? `, ${c.commandsRefused} command(s) refused` : "") +
    (c.missing > 0 ? `, ${c.missing} without a result` : ""),
  task: (id) => `task ${id}`,
  moreInProgress: (n) => `… and ${n} more task(s) in progress`,
  replyMeta: (m) => metaList(m, { id: "id", worker: "worker", attempts: (n) => `${n} attempts`, ms: "ms" }),
  usage: (command) =>
    `usage: ${
      {
        "/task": "/task <name> <payload>",
        "/status": "/status <task id>, a whole number like 17",
        "/auth": "/auth <token>",
      }[command] ?? command
    } (nothing was sent)`,
  takesNoArgument: (command) => `${command} takes no argument (nothing was sent)`,
  unknownCommand: (command, suggestion) =>
    `unknown command ${command}${suggestion ? ` — did you mean ${suggestion}?` : ""} /help lists the commands` +
    " (nothing was sent)",
  badJson: (why) => `not valid JSON: ${why} (nothing was sent)`,
  connectRefused: (where, serve) =>
    `cannot connect to ${where}: connection refused — is the server running? Start it with \`${serve}\``,
  connectTimeout: (where, ms) =>
    `cannot connect to ${where}: no answer within ${ms} ms — check the address, and any firewall between`,
  connectTls: (where, why) =>
    `cannot connect to ${where} with TLS: ${why} — is the server serving TLS, and does --ca name the certificate authority that signed its certificate?`,
  unknownHost: (where, host) => `cannot connect to ${where}: unknown host "${host}" — check --host`,
  connectFailed: (where, why) => `cannot connect to ${where}: ${why} — check --host and --port`,
  speaksTls: (where) => `${where} speaks TLS: add --tls (and --ca <ca.pem> for a self-signed certificate)`,
  tokenRefused: "the server refused the token — check --token or ASYNCTASK_TOKEN",
  tokenNeeded: (where) => `${where} needs a token: set ASYNCTASK_TOKEN (or pass --token) to the server's --token`,
  unfinished: (n, ids, more, client) =>
    `the server closed the connection with ${n} task(s) unfinished` +
    (ids.length > 0
      ? ` (ids ${ids.join(", ")}${more ? ", …" : ""}); look them up with \`/status <id>\` in \`${client}\``
      : ""),
};

const zh: ClientMessages = {
  prompt: (task) => task === undefined || task === "sms" ? "请输入手机号：" : `请输入 ${task} 任务的数据：`,
  connected: (address, task) =>
    `已连接到 ${address}。${
      task === undefined || task === "sms" ? "输入手机号即可发送短信" : `输入 ${task} 任务的数据`
    }；/help 查看命令，Ctrl-D 退出。`,
  help: {
    intro: "输入数据后按回车发送（sms 任务：输入手机号）。命令：",
    rows: [
      ["/task <任务名> <数据>", "发给其他任务（sms、echo、sleep……）"],
      ["/status <编号>", "任务的状态和结果，重新连接后也能查"],
      ["/stats", "服务器的计数"],
      ["/ping", "检查服务器是否应答"],
      ["/quit", "断开连接"],
      ["Ctrl-D", "等待未完成的结果，然后退出 · Ctrl-C 立即退出"],
    ],
  },
  waiting: (n) => `正在等待 ${n} 个未完成的结果……（Ctrl-C 立即退出）`,
  serverClosed: "服务器关闭了连接",
  summary: (c) =>
    `已受理 ${c.accepted}，完成 ${c.done}，失败 ${c.failed}，被拒 ${c.refused}` +
    (c.commandsRefused > 0 ? `，被拒的命令 ${c.commandsRefused}` : "") +
    (c.missing > 0 ? `，没有结果 ${c.missing}` : ""),
  task: (id) => `任务 ${id}`,
  moreInProgress: (n) => `……另有 ${n} 个任务在进行`,
  replyMeta: (m) =>
    metaList(m, { id: "id", worker: "工作进程", attempts: (n) => `尝试 ${n} 次`, ms: "毫秒" }, "（", "）", "，"),
  usage: (command) =>
    `用法：${
      {
        "/task": "/task <任务名> <数据>",
        "/status": "/status <任务编号>，一个整数，比如 17",
        "/auth": "/auth <令牌>",
      }[command] ?? command
    }（未发送）`,
  takesNoArgument: (command) => `${command} 不带参数（未发送）`,
  unknownCommand: (command, suggestion) =>
    `没有 ${command} 这个命令${suggestion ? `，是不是想输入 ${suggestion}？` : "。"}/help 列出所有命令（未发送）`,
  badJson: (why) => `不是有效的 JSON：${why}（未发送）`,
  connectRefused: (where, serve) => `无法连接 ${where}：连接被拒绝——服务器在运行吗？用 \`${serve}\` 启动它`,
  connectTimeout: (where, ms) => `无法连接 ${where}：${ms} 毫秒内没有应答——请检查地址，以及中间的防火墙`,
  connectTls: (where, why) =>
    `无法用 TLS 连接 ${where}：${why}——服务器提供 TLS 吗？--ca 是签发其证书的证书颁发机构吗？`,
  unknownHost: (where, host) => `无法连接 ${where}：未知主机“${host}”——请检查 --host`,
  connectFailed: (where, why) => `无法连接 ${where}：${why}——请检查 --host 和 --port`,
  speaksTls: (where) => `${where} 使用 TLS：请加上 --tls（自签名证书还要加 --ca <ca.pem>）`,
  tokenRefused: "服务器拒绝了令牌——请检查 --token 或 ASYNCTASK_TOKEN",
  tokenNeeded: (where) => `${where} 需要令牌：请把 ASYNCTASK_TOKEN（或 --token）设为服务器的 --token`,
  unfinished: (n, ids, more, client) =>
    `服务器关闭了连接，还有 ${n} 个任务未完成` +
    (ids.length > 0
      ? `（编号 ${ids.join("、")}${more ? "……" : ""}）；可以在 \`${client}\` 里用 \`/status <编号>\` 查询`
      : ""),
};

function metaList(
  m: ReplyMeta,
  words: { id: string; worker: string; attempts: (n: number) => string; ms: string },
  open = " (",
  close = ")",
  sep = ", ",
): string {
  const parts: string[] = [];
  if (m.id !== undefined) parts.push(`${words.id} ${JSON.stringify(m.id)}`);
  if (m.worker !== undefined) parts.push(`${words.worker} ${m.worker}`);
  if (m.attempts !== undefined && m.attempts > 1) parts.push(words.attempts(m.attempts));
  if (m.ms !== undefined) parts.push(`${m.ms} ${words.ms}`);
  return parts.length > 0 ? `${open}${parts.join(sep)}${close}` : "";
}

/** Every language the client speaks, by the locale prefix that selects it. */
export const MESSAGES = { en, zh } as const satisfies Record<string, ClientMessages>;

/** A language of {@linkcode MESSAGES}. */
export type Language = keyof typeof MESSAGES;

function isLanguage(code: string): code is Language {
  return Object.hasOwn(MESSAGES, code);
}

/**
 * The language for a locale environment: the first of `LC_ALL`, `LC_MESSAGES`, `LANG` that is
 * set decides; a table entry whose key starts it wins, English otherwise.
 *
 * @example
 * ```ts
 * import { languageFrom } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.equal(languageFrom({ LANG: "zh_CN.UTF-8" }), "zh");
 * assert.equal(languageFrom({ LANG: "zh_TW.UTF-8", LC_ALL: "C" }), "en");
 * assert.equal(languageFrom({ LC_MESSAGES: "zh_HK" }), "zh");
 * assert.equal(languageFrom({}), "en");
 * ```
 */
export function languageFrom(env: Readonly<Record<string, string | undefined>>): Language {
  for (const name of ["LC_ALL", "LC_MESSAGES", "LANG"]) {
    const value = env[name];
    if (!value) continue;
    const code = value.toLowerCase().split(/[_.@-]/)[0];
    return isLanguage(code) ? code : "en";
  }
  return "en";
}

/** The messages for this process's locale (English where the environment cannot be read). */
export function localMessages(): ClientMessages {
  const env: Record<string, string | undefined> = {};
  for (const name of ["LC_ALL", "LC_MESSAGES", "LANG"]) {
    try {
      env[name] = Deno.env.get(name);
    } catch {
      // no --allow-env: English
    }
  }
  return MESSAGES[languageFrom(env)];
}

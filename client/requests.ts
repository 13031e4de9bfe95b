/**
 * What the client sends for a line the user typed or piped: the line itself in text mode (with
 * `/task <name>` put in front when `--task` is given), or the matching JSON request with `--json`.
 *
 * @module
 */

/** How lines become requests. */
export interface RequestOptions {
  /** Task for plain payloads; the server's default task when absent. */
  task?: string;
  /** Send JSON requests (and so get JSON replies). */
  json: boolean;
}

/**
 * Turns one input line into one request line.
 *
 * @example
 * ```ts
 * import { toRequest } from "./requests.ts";
 * console.log(toRequest("13800138000", { json: false })); // "13800138000"
 * console.log(toRequest("hi", { task: "echo", json: false })); // "/task echo hi"
 * console.log(toRequest("/status 4", { json: true })); // '{"cmd":"status","task_id":4}'
 * ```
 */
export function toRequest(line: string, opts: RequestOptions): string {
  const text = line.trim();
  if (text.startsWith("{")) return text;
  if (!opts.json) {
    if (text.startsWith("/") || opts.task === undefined) return text;
    return `/task ${opts.task} ${text}`;
  }
  if (!text.startsWith("/")) {
    return JSON.stringify(opts.task === undefined ? { data: text } : { task: opts.task, data: text });
  }
  const [command, ...args] = text.split(/\s+/);
  const arg = text.slice(command.length).trim();
  switch (command) {
    case "/task":
      return JSON.stringify({ task: args[0] ?? "", data: arg.slice((args[0] ?? "").length).trim() });
    case "/status":
      return JSON.stringify({ cmd: "status", task_id: /^\d+$/.test(arg) ? Number(arg) : arg });
    case "/auth":
      return JSON.stringify({ cmd: "auth", token: arg });
    default:
      // /stats, /ping, /quit — and unknown commands, which the server then names in its error.
      return JSON.stringify({ cmd: command.slice(1) });
  }
}

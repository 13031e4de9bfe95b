/**
 * `webhook` tasks: POST each task to an HTTP endpoint the operator declared in the config file.
 *
 * The request: `POST <url>` with `Content-Type: application/json`, the configured headers,
 * `X-Asynctask-Task-Id`, `X-Asynctask-Attempt`, and the body `{"task_id", "task", "attempt",
 * "data"}`. With a `secret`, it is signed as Stripe signs its webhooks:
 * `X-Asynctask-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>`
 * (see {@linkcode verifySignature} for the receiving side).
 *
 * The answer: 2xx is success, the response body (JSON when it parses, else text, up to
 * `max-output` bytes) is the result; 408, 429, 5xx and network errors are retried (a
 * `Retry-After` is honoured); redirects and other 4xx are permanent failures. A 2xx answer of
 * type `application/x-ndjson` may report progress as it goes (see {@linkcode readProgressStream}).
 *
 * @module
 */
import { PermanentError, RetryLaterError, type TaskHandler } from "../types.ts";
import type { TaskSpec } from "../spec.ts";
import { commandResult } from "./command.ts";

/** The `webhook` kind of {@linkcode TaskSpec}. */
export type WebhookSpec = Extract<TaskSpec, { kind: "webhook" }>;

/** The header that carries the signature. */
export const SIGNATURE_HEADER = "X-Asynctask-Signature";

const encoder = new TextEncoder();

function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
}

function toHex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The signature header's value for `body` sent at `timestamp` (unix seconds).
 *
 * @example
 * ```ts
 * import { signBody } from "./webhook.ts";
 * import assert from "node:assert/strict";
 * const header = await signBody("whsec_test", 1700000000, '{"task_id":1}');
 * assert.ok(header.startsWith("t=1700000000,v1="));
 * ```
 */
export async function signBody(secret: string, timestamp: number, body: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(secret), encoder.encode(`${timestamp}.${body}`));
  return `t=${timestamp},v1=${toHex(mac)}`;
}

/**
 * Checks a signature header, as a webhook receiver should: the MAC must match (compared in
 * constant time by WebCrypto) and the timestamp be within `toleranceS` seconds of now, which
 * stops replays of old requests.
 *
 * @example
 * ```ts
 * import { signBody, verifySignature } from "./webhook.ts";
 * import assert from "node:assert/strict";
 * const now = Math.floor(Date.now() / 1000);
 * const header = await signBody("whsec_test", now, "{}");
 * assert.ok(await verifySignature("whsec_test", header, "{}"));
 * assert.ok(!await verifySignature("whsec_test", header, "{ }")); // a body changed by one byte fails
 * ```
 */
export async function verifySignature(
  secret: string,
  header: string | null,
  body: string,
  toleranceS = 300,
  nowS: number = Math.floor(Date.now() / 1000),
): Promise<boolean> {
  const parts = new Map(
    (header ?? "").split(",").map((p) => p.trim().split("=", 2) as [string, string]),
  );
  const t = Number(parts.get("t"));
  const v1 = parts.get("v1") ?? "";
  if (!Number.isInteger(t) || Math.abs(nowS - t) > toleranceS || !/^[0-9a-f]{64}$/.test(v1)) return false;
  const mac = new Uint8Array(v1.match(/../g)!.map((h) => parseInt(h, 16)));
  return crypto.subtle.verify("HMAC", await hmacKey(secret), mac, encoder.encode(`${t}.${body}`));
}

/**
 * Reads a `Retry-After` header (seconds, or an HTTP date) as milliseconds from `now`.
 *
 * @example
 * ```ts
 * import { parseRetryAfter } from "./webhook.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseRetryAfter("30"), 30000);
 * assert.equal(parseRetryAfter(null), undefined);
 * ```
 */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Reads at most `max` bytes of a response body and cancels the rest. */
async function readBody(res: Response, max: number): Promise<string> {
  if (!res.body) return "";
  const chunks: Uint8Array[] = [];
  let kept = 0;
  const reader = res.body.getReader();
  while (kept < max) {
    const { value, done } = await reader.read();
    if (done) break;
    const part = value.length > max - kept ? value.subarray(0, max - kept) : value;
    chunks.push(part);
    kept += part.length;
  }
  reader.cancel().catch(() => {});
  const decoder = new TextDecoder();
  return chunks.map((c, i) => decoder.decode(c, { stream: i < chunks.length - 1 })).join("");
}

/** The useful part of a fetch failure: "fetch failed" says nothing; its cause says what (refused, DNS, TLS). */
function networkError(e: unknown): string {
  const cause = (e as { cause?: unknown }).cause;
  const text = cause instanceof Error ? cause.message : (e as Error).message;
  // "error sending request for url (…): client error (Connect): tcp connect error: Connection refused (os error 111)"
  return text.replace(/^error sending request for url \([^)]*\): /, "").replace(/^client error \(\w+\): /, "");
}

/**
 * A 2xx answer of type `application/x-ndjson`, for work that takes a while: one JSON object per
 * line, `{"progress": 40, "message": "…"}` for each step (a `PROGRESS` reply each), then
 * `{"result": …}`. The task's result is that `result` (or the last line, if none has one).
 */
async function readProgressStream(
  res: Response,
  max: number,
  progress: (percent: number, message?: string) => void,
): Promise<unknown> {
  let last: unknown = null;
  let result: { value: unknown } | undefined;
  let read = 0;
  let partial = "";
  const take = (line: string) => {
    if (line.trim() === "") return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      last = line;
      return;
    }
    const o = obj as { progress?: unknown; message?: unknown; result?: unknown };
    if (typeof o === "object" && o !== null && typeof o.progress === "number" && !("result" in o)) {
      progress(o.progress, typeof o.message === "string" ? o.message : undefined);
    } else if (typeof o === "object" && o !== null && "result" in o) {
      result = { value: o.result };
    } else {
      last = obj;
    }
  };
  for await (const text of res.body!.pipeThrough(new TextDecoderStream())) {
    read += text.length;
    if (read > max) throw new Error(`the webhook's answer is longer than max-output ${max} bytes`);
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    for (const line of lines) take(line);
  }
  take(partial);
  return result ? result.value : last;
}

function excerpt(text: string): string {
  const one = text.replace(/\s+/g, " ").trim();
  return one.length > 300 ? `${one.slice(0, 300)}…` : one;
}

/**
 * Creates the handler of a `webhook` task.
 *
 * @example
 * ```ts
 * import { createWebhookHandler } from "./webhook.ts";
 * import { testContext } from "../testing.ts";
 * import assert from "node:assert/strict";
 * await using server = Deno.serve({ port: 0, onListen() {} }, async (req) => Response.json({ got: await req.json() }));
 * const hook = createWebhookHandler({ kind: "webhook", name: "mail", url: `http://127.0.0.1:${server.addr.port}/`, headers: {}, maxOutput: 65536 });
 * const result = await hook.run({ to: "a@example.com" }, testContext({ taskId: 5, task: "mail" })) as { got: { task_id: number } };
 * assert.equal(result.got.task_id, 5);
 * ```
 */
export function createWebhookHandler(spec: WebhookSpec): TaskHandler {
  return {
    name: spec.name,
    description: spec.description ?? `POSTs the task to ${new URL(spec.url).origin}`,
    validate: (data) => data,
    timeoutMs: spec.timeoutMs,
    retries: spec.retries,
    concurrency: spec.concurrency,
    async run(data, ctx) {
      const body = JSON.stringify({ task_id: ctx.taskId, task: ctx.task, attempt: ctx.attempt, data });
      const headers = new Headers(spec.headers);
      headers.set("Content-Type", "application/json");
      headers.set("X-Asynctask-Task-Id", String(ctx.taskId));
      headers.set("X-Asynctask-Attempt", String(ctx.attempt));
      if (!headers.has("User-Agent")) headers.set("User-Agent", "asynctask");
      if (spec.secret !== undefined) {
        headers.set(SIGNATURE_HEADER, await signBody(spec.secret, Math.floor(Date.now() / 1000), body));
      }
      let res: Response;
      try {
        res = await fetch(spec.url, { method: "POST", headers, body, signal: ctx.signal, redirect: "manual" });
      } catch (e) {
        ctx.signal.throwIfAborted();
        throw new Error(`cannot reach ${spec.url}: ${networkError(e)}`);
      }
      if (res.ok && /^application\/x-ndjson\b/i.test(res.headers.get("Content-Type") ?? "")) {
        return await readProgressStream(res, spec.maxOutput, ctx.progress);
      }
      const text = await readBody(res, spec.maxOutput);
      const status = `${spec.url} answered ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
      if (res.ok) return commandResult(text);
      const detail = text ? `: ${excerpt(text)}` : "";
      if (res.status === 408 || res.status === 429 || res.status >= 500) {
        const after = parseRetryAfter(res.headers.get("Retry-After"));
        if (after !== undefined) throw new RetryLaterError(`${status}${detail}`, after);
        throw new Error(`${status}${detail}`);
      }
      if (res.status >= 300 && res.status < 400) {
        const to = res.headers.get("Location");
        throw new PermanentError(
          `${status}${to ? ` (to ${to})` : ""}: redirects are not followed — set the task's "url" to the final address`,
        );
      }
      throw new PermanentError(`${status}${detail}`);
    },
  };
}

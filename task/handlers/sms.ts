/**
 * `sms`: the demo task of Swoole's example server. It pretends to send a text message: it waits
 * `--sms-delay` (5 s by default, like the example's `sleep(5)`) and succeeds with the phone number and the time it was
 * "sent". No SMS leaves the machine; plug a real sender in as a command or webhook handler.
 *
 * @module
 */
import { abortableDelay, InvalidDataError, type TaskHandler } from "../types.ts";
import type { HandlerSettings } from "../spec.ts";

/** The result of a "sent" SMS. */
export interface SmsResult {
  phone: string;
  sent_at: string;
}

/**
 * Normalises a phone number: an optional `+`, then 5–20 digits; spaces and dashes are ignored.
 * Accepts the number as text, as a JSON string, or as `{"phone": "…"}`. The text is first put in
 * Unicode NFKC form, so that a number typed with a Chinese (or Japanese) input method — full-width
 * digits `１３８`, a full-width `＋` or `－`, ideographic spaces — reads as the same number.
 *
 * @example
 * ```ts
 * import { parsePhone } from "./sms.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parsePhone("+86 138-0013-8000"), "+8613800138000");
 * assert.equal(parsePhone("＋８６\u3000１３８－００１３－８０００"), "+8613800138000");
 * ```
 * @throws {InvalidDataError} when it is not a phone number.
 */
export function parsePhone(data: unknown): string {
  let raw = data;
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw) && "phone" in raw) {
    raw = (raw as { phone: unknown }).phone;
  }
  if (typeof raw !== "string") {
    throw new InvalidDataError(
      `sms needs a phone number as text or {"phone": "…"}, got ${raw === null ? "null" : typeof raw}`,
    );
  }
  const phone = raw.normalize("NFKC").trim().replace(/[\s-]/g, "");
  if (!/^\+?\d{5,20}$/.test(phone)) {
    const shown = raw.length > 40 ? `${raw.slice(0, 40)}…` : raw;
    throw new InvalidDataError(
      `"${shown}" is not a phone number: use an optional + and 5 to 20 digits (spaces and dashes are ignored)`,
    );
  }
  return phone;
}

/**
 * Creates the `sms` handler with the operator's delay.
 *
 * @example
 * ```ts
 * import { createSmsHandler } from "./sms.ts";
 * import { testContext } from "../testing.ts";
 * import assert from "node:assert/strict";
 * const sms = createSmsHandler({ smsDelayMs: 1 });
 * const phone = sms.validate("13800138000");
 * const result = await sms.run(phone, testContext());
 * assert.equal(result.phone, "13800138000");
 * ```
 */
export function createSmsHandler(settings: HandlerSettings): TaskHandler<string, SmsResult> {
  return {
    name: "sms",
    description: "pretends to send an SMS to a phone number (waits --sms-delay)",
    validate: parsePhone,
    accepted: (phone) => `sending SMS to ${phone}, the result will follow`,
    async run(phone, ctx) {
      await abortableDelay(settings.smsDelayMs, ctx.signal);
      return { phone, sent_at: new Date().toISOString() };
    },
  };
}

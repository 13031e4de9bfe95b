/**
 * An asynctask `module` handler: the `report` task of `examples/asynctask.json`. It counts the
 * words of a text, reporting progress as it goes, and honours the abort signal.
 *
 * A module task exports a default function `(data, ctx) => result` and, optionally, `validate`,
 * which runs on the server before the task is accepted: throw to refuse the data (the client gets
 * `ERROR invalid_data <your message>`); return a value to replace the data with a normalised one.
 */

/** What the server gives a handler besides the data (see `TaskContext` in `task/types.ts`). */
interface Ctx {
  taskId: number;
  attempt: number;
  signal: AbortSignal;
  progress(percent: number, message?: string): void;
  logger: { info(message: string, properties?: Record<string, unknown>): void };
}

export function validate(data: unknown): string {
  const text = typeof data === "object" && data !== null ? (data as { text?: unknown }).text : data;
  if (typeof text !== "string" || text.trim() === "") throw new Error('give the text to count, or {"text": "…"}');
  return text;
}

export default async function wordCount(text: string, ctx: Ctx): Promise<{ words: number; top: [string, number][] }> {
  const words = text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
  const counts = new Map<string, number>();
  const step = Math.max(1, Math.ceil(words.length / 4));
  for (let i = 0; i < words.length; i++) {
    counts.set(words[i], (counts.get(words[i]) ?? 0) + 1);
    if ((i + 1) % step === 0) {
      ctx.progress(Math.round(((i + 1) / words.length) * 100), `${i + 1} of ${words.length} words`);
      // Pretend this is slow work, and give the abort signal a chance to stop it.
      await new Promise((r) => setTimeout(r, 200));
      ctx.signal.throwIfAborted();
    }
  }
  ctx.logger.info("counted {words} words", { words: words.length });
  const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 3);
  return { words: words.length, top };
}

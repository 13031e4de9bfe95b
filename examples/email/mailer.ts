/**
 * An e-mail sender behind a webhook: the target of the `email` task in `examples/asynctask.json`.
 * It checks asynctask's signature, "sends" the mail by appending it to `mailbox.txt` (or
 * MAILER_MAILBOX), and answers with a message id, which becomes the task's result.
 *
 *   MAILER_SECRET="dev-only-secret: use secret-env in production" ./deno run --allow-net --allow-env --allow-write examples/email/mailer.ts
 *
 * Everything a receiver must do is here: verify `X-Asynctask-Signature` (`t=<unix seconds>,v1=<hex
 * HMAC-SHA256 of "<t>.<raw body>">`) over the raw body, refuse stale timestamps (replays), and be
 * idempotent: asynctask delivers at least once, so the same task id may arrive twice — here a
 * task id already sent is answered again without sending a second mail.
 */
const secret = Deno.env.get("MAILER_SECRET") ?? "dev-only-secret: use secret-env in production";
const port = Number(Deno.env.get("MAILER_PORT") ?? 8025);
const mailbox = Deno.env.get("MAILER_MAILBOX") ?? "mailbox.txt";
const encoder = new TextEncoder();
const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
  "verify",
]);
const sent = new Map<number, string>();

function signed(header: string | null, body: string): Promise<boolean> {
  const fields = new Map((header ?? "").split(",").map((kv) => kv.split("=", 2) as [string, string]));
  const t = Number(fields.get("t"));
  const v1 = fields.get("v1") ?? "";
  if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > 300 || !/^[0-9a-f]{64}$/.test(v1)) {
    return Promise.resolve(false);
  }
  const mac = new Uint8Array(v1.match(/../g)!.map((h) => parseInt(h, 16)));
  return crypto.subtle.verify("HMAC", key, mac, encoder.encode(`${t}.${body}`));
}

Deno.serve({ hostname: "127.0.0.1", port }, async (req) => {
  if (req.method !== "POST" || new URL(req.url).pathname !== "/send") return new Response("not found", { status: 404 });
  const body = await req.text();
  if (!(await signed(req.headers.get("X-Asynctask-Signature"), body))) {
    return new Response("bad or missing signature", { status: 401 });
  }
  const { task_id, attempt, data } = JSON.parse(body) as {
    task_id: number;
    attempt: number;
    data: { to: string; subject: string; body?: string };
  };
  const known = sent.get(task_id);
  if (known) return Response.json({ message_id: known, duplicate: true });
  const id = `<${task_id}.${Date.now()}@mailer.example>`;
  await Deno.writeTextFile(
    mailbox,
    `${new Date().toISOString()}\t${id}\tattempt ${attempt}\tto ${data.to}\t${data.subject}\n`,
    { append: true },
  );
  sent.set(task_id, id);
  return Response.json({ message_id: id });
});

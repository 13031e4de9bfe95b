/**
 * The dashboard in a real browser: Debian's headless Chromium driven by playwright-core. It loads
 * the page, sees the live numbers follow tasks sent over TCP, submits a task through the form and
 * sees its result, cancels running and queued tasks, retries and discards failed ones and sees the
 * retry's result, signs in with the token, sees the server drain, and leaves screenshots in
 * tests/artifacts/. Where Chromium is not installed (`apt-get install chromium`), the browser tests
 * report themselves skipped, with the reason in their names. The endpoints behind the buttons
 * (`/api/operate`, `/api/list`) are also tested without a browser.
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import type { TaskServer } from "../server/mod.ts";
import { FIXTURE_HANDLERS, LineClient, ROOT, startServer, untilReply } from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const skipped = hasChromium ? "" : ` — SKIPPED: no Chromium at ${CHROMIUM} (apt-get install chromium)`;
const SCREENSHOTS = `${ROOT}tests/artifacts`;

async function withBrowser(fn: (browser: Browser) => Promise<void>): Promise<void> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--headless",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    await fn(browser);
  } finally {
    await browser.close();
  }
}

/** Collects what the page complains of: script errors, failed loads (with their address), CSP refusals. */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") {
      problems.push(`console ${m.type()}: ${m.text()} (${m.location().url})`);
    }
  });
  return problems;
}

const tile = (page: Page, id: string) => page.locator(`#tile-${id} .value`).textContent();

async function waitForText(page: Page, selector: string, expected: RegExp, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    last = (await page.locator(selector).textContent()) ?? "";
    if (expected.test(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${selector} did not show ${expected} within ${timeoutMs} ms; it shows ${JSON.stringify(last)}`);
}

async function dashboardUrl(server: TaskServer): Promise<string> {
  await Deno.mkdir(SCREENSHOTS, { recursive: true });
  return `http://127.0.0.1:${server.httpAddr!.port}/`;
}

Deno.test({
  name: `dashboard: live numbers follow tasks sent over TCP; the form submits a task and shows its result${skipped}`,
  ignore: !hasChromium,
  fn: async () => {
    const server = await startServer({ http: "127.0.0.1:0", workers: 2, smsDelayMs: 400 });
    let stopped = false;
    try {
      const url = await dashboardUrl(server);
      await withBrowser(async (browser) => {
        const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "light" });
        const page = await context.newPage();
        const problems = watch(page);
        await page.goto(url);
        await waitForText(page, "#status", /^ready$/);
        assert.equal(await tile(page, "done"), "0");
        assert.equal(await page.locator("#workers tbody tr").count(), 2, "one row per worker");

        // Tasks over TCP: the numbers move without a reload.
        const c = await LineClient.connect(server.addr.port);
        await c.send(
          ...Array.from({ length: 6 }, (_, i) => `/task echo e${i}`),
          "/task sms 13800138000",
          "/task sms 13800138001",
        );
        await waitForText(page, "#tile-connections .value", /^1$/);
        await waitForText(page, "#tile-done .value", /^8$/);
        await c.take(16);
        await waitForText(page, '#tasks tr[data-task="echo"] td:nth-child(3)', /^6$/);
        await waitForText(page, '#tasks tr[data-task="sms"] td:nth-child(3)', /^2$/);
        // The page's own chart data, as app.js keeps it (exposed for the browser's console).
        const busy = Number(
          await page.evaluate(
            "Math.max(...asynctaskDashboard.series.tasks.get('echo').rate.map((v) => v ?? 0))",
          ),
        );
        assert.ok(busy > 0, "the tasks-per-second chart got a point above 0");
        assert.equal(await page.locator("#chart-rate canvas").count(), 1, "the chart is drawn");
        assert.equal(await page.locator("#failures-note").textContent(), "No failures since the start.");
        await c.close();
        await waitForText(page, "#tile-connections .value", /^0$/);

        // The form: a task, and its result as it arrives.
        assert.deepEqual(await page.locator("#task-select option").allTextContents(), ["sms", "echo", "sleep"]);
        await page.selectOption("#task-select", "echo");
        await page.fill("#task-data", '{"from": "the form"}');
        await page.click("#task-submit");
        await page.locator('#task-output[data-state="done"]').waitFor({ timeout: 15_000 });
        assert.match((await page.locator("#task-line").textContent())!, /^Task 9 done in \d+ ms on worker \d/);
        assert.deepEqual(JSON.parse((await page.locator("#task-result").textContent())!), { from: "the form" });
        await waitForText(page, "#tile-done .value", /^9$/);
        // A refusal shows the server's reason.
        await page.selectOption("#task-select", "sleep");
        await page.fill("#task-data", '"soon"');
        await page.click("#task-submit");
        await page.locator('#task-output[data-state="error"]').waitFor({ timeout: 15_000 });
        assert.match((await page.locator("#task-line").textContent())!, /^Refused: invalid_data — sleep needs/);
        // Data that is not JSON is caught before it is sent.
        await page.fill("#task-data", "hello");
        await page.click("#task-submit");
        assert.match((await page.locator("#task-line").textContent())!, /^The data is not JSON/);

        await page.screenshot({ path: `${SCREENSHOTS}/dashboard.png`, fullPage: true });
        const phone = await browser.newContext({
          viewport: { width: 390, height: 844 },
          deviceScaleFactor: 2,
          colorScheme: "dark",
        });
        const small = await phone.newPage();
        const smallProblems = watch(small);
        await small.goto(url);
        await waitForText(small, "#tile-done .value", /^9$/);
        // Expressions as text: they run in the page, whose DOM types this test does not load.
        const overflow = Number(await small.evaluate("document.documentElement.scrollWidth - window.innerWidth"));
        assert.ok(overflow <= 0, `the page fits a phone's width (it overflows by ${overflow} px)`);
        const bg = String(await small.evaluate("getComputedStyle(document.body).backgroundColor"));
        assert.equal(bg, "rgb(17, 21, 28)", "the dark theme");
        await small.screenshot({ path: `${SCREENSHOTS}/dashboard-phone-dark.png`, fullPage: true });

        // Stopping: the page says so within a second, while the last task drains.
        const d = await LineClient.connect(server.addr.port);
        await d.send("/task sleep 1500");
        assert.match(await d.next(), /^ACCEPTED/);
        const stopping = server.shutdown(10_000);
        stopped = true;
        await waitForText(page, "#status", /^draining/, 3000);
        await stopping;
        await d.close();
        // A listing of the running tasks asked for just as the server stopped is answered 503: not a fault.
        assert.deepEqual(
          problems.filter((p) => !(p.includes("/api/list") && p.includes("503"))),
          [],
          "no script error, failed load or CSP refusal",
        );
        assert.deepEqual(smallProblems, []);
        await phone.close();
        await context.close();
      });
    } finally {
      if (!stopped) await server.shutdown(5000);
    }
  },
});

Deno.test({
  name: `dashboard: with --token, the browser signs in through the form and the page works${skipped}`,
  ignore: !hasChromium,
  fn: async () => {
    const server = await startServer({ http: "127.0.0.1:0", workers: 1, token: "browser-token" });
    try {
      const url = await dashboardUrl(server);
      await withBrowser(async (browser) => {
        const context = await browser.newContext();
        const page = await context.newPage();
        const problems = watch(page);
        await page.goto(url);
        assert.match(page.url(), /\/login\?next=%2F$/);
        await page.fill("#token", "wrong");
        await page.click("button[type=submit]");
        assert.equal(await page.locator(".error").textContent(), "Wrong token.");
        await page.fill("#token", "browser-token");
        await page.click("button[type=submit]");
        await page.waitForURL(url);
        await waitForText(page, "#status", /^ready$/);
        const cookies = await context.cookies();
        assert.equal(cookies.length, 1);
        assert.equal(cookies[0].httpOnly, true);
        assert.equal(cookies[0].sameSite, "Strict");
        assert.equal(await page.evaluate("document.cookie"), "", "scripts cannot read it");
        await page.selectOption("#task-select", "echo");
        await page.fill("#task-data", '"signed in"');
        await page.click("#task-submit");
        await page.locator('#task-output[data-state="done"]').waitFor({ timeout: 15_000 });
        assert.equal(await page.locator("#task-result").textContent(), "signed in");
        await page.click("#logout button");
        await page.waitForURL(/\/login$/);
        // The failed sign-in's 401 is the one console line expected.
        assert.deepEqual(problems.filter((p) => !p.includes("401")), []);
        await context.close();
      });
    } finally {
      await server.shutdown(5000);
    }
  },
});

Deno.test({
  name:
    `dashboard: once run times and failures are reported, the latency chart, the p50/p99 columns and the failure list fill${skipped}`,
  ignore: !hasChromium,
  fn: async () => {
    const server = await startServer({ http: "127.0.0.1:0", workers: 1 });
    // What the lifecycle reports as tasks run (server/metrics.ts), made up here: 20 ms ± 10 runs.
    let n = 0;
    const feed = setInterval(() => {
      for (let i = 0; i < 20; i++) {
        server.metrics.taskStarted("echo", 1);
        server.metrics.taskEnded("echo", "done", 10 + (n++ % 21));
      }
    }, 100);
    server.metrics.taskEnded("sms", "handler_error", 30);
    server.metrics.taskFailed(41, "sms", "handler_error", "the gateway said <b>no</b>");
    try {
      const url = await dashboardUrl(server);
      await withBrowser(async (browser) => {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        const problems = watch(page);
        await page.goto(url);
        await waitForText(page, '#tasks tr[data-task="echo"] td:nth-child(7)', /^\d+(\.\d+)?$/);
        const p50 = Number(await page.locator('#tasks tr[data-task="echo"] td:nth-child(7)').textContent());
        const p99 = Number(await page.locator('#tasks tr[data-task="echo"] td:nth-child(8)').textContent());
        assert.ok(p50 >= 10 && p50 <= 30, `p50 ${p50} ms`);
        assert.ok(p99 >= p50 && p99 <= 50, `p99 ${p99} ms`);
        assert.equal(await page.locator("#latency-note").isHidden(), true);
        const failure = page.locator("#failures li").first();
        assert.equal(await failure.locator("code").textContent(), "handler_error");
        assert.match(
          (await failure.textContent())!,
          /^task 41 \(sms\) handler_error the gateway said <b>no<\/b> /,
          "shown as text",
        );
        await waitForText(page, "#tile-rate .value", /^\d/);
        await page.waitForTimeout(2500); // a few points on the latency chart
        await page.screenshot({ path: `${SCREENSHOTS}/dashboard-latency.png`, fullPage: true });
        assert.deepEqual(problems, []);
        await page.close();
      });
    } finally {
      clearInterval(feed);
      await server.shutdown(5000);
    }
  },
});

Deno.test({
  name:
    `dashboard: Cancel stops a queued and a running task; Retry runs a failure again and shows the new task's result; Discard forgets one${skipped}`,
  ignore: !hasChromium,
  fn: async () => {
    const server = await startServer({ http: "127.0.0.1:0", workers: 1, concurrency: 1, modules: [FIXTURE_HANDLERS] });
    const owner = await LineClient.connect(server.addr.port);
    try {
      const url = await dashboardUrl(server);
      await withBrowser(async (browser) => {
        const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
        const problems = watch(page);
        await page.goto(url);
        await waitForText(page, "#status", /^ready$/);
        assert.equal(await page.locator("#running-note").textContent(), "Nothing is running or queued.");

        // One task fails at once; a slow one runs; a short one waits behind it (one worker, one task at a time).
        await owner.send("/task fail disk full", "/task slow 30000", "/task slow 300");
        assert.equal((await owner.take(4)).filter((l) => l.startsWith("ACCEPTED")).length, 3);
        const row = (id: number) => page.locator(`#running tr[data-id="${id}"]`);
        await row(3).waitFor({ timeout: 15_000 });
        assert.deepEqual(await page.locator("#running tbody tr td:nth-child(3)").allTextContents(), [
          "running",
          "queued",
        ]);
        assert.equal(await row(2).locator("td:nth-child(2)").textContent(), "slow");
        await page.locator("#running-card").screenshot({ path: `${SCREENSHOTS}/dashboard-running.png` });

        // Cancel: the queued one, then the running one; each ends FAILED cancelled to its own client.
        await row(3).locator('button[data-op="cancel"]').click();
        assert.match(await owner.next(), /^FAILED 3 cancelled cancelled by 127\.0\.0\.1:\d+ \(connection \d+\)$/);
        await row(3).waitFor({ state: "detached", timeout: 15_000 });
        await row(2).locator('button[data-op="cancel"]').click();
        assert.match(await owner.next(), /^FAILED 2 cancelled /);
        await page.locator("#running-note").waitFor({ state: "visible", timeout: 15_000 });
        assert.equal(await page.locator("#running").isHidden(), true);

        // The failures, newest first, each with Retry and Discard.
        const failure = (id: number) => page.locator(`#failures li[data-id="${id}"]`);
        await failure(2).waitFor({ timeout: 15_000 });
        const ids = await Promise.all(
          (await page.locator("#failures li").all()).map((li) => li.getAttribute("data-id")),
        );
        assert.deepEqual(ids, ["2", "3", "1"]);
        assert.match((await failure(1).textContent())!, /^task 1 \(fail\) handler_error disk full /);
        assert.deepEqual(await failure(1).locator("button").allTextContents(), ["Retry", "Discard"]);

        // Retry the cancelled short task: it runs again as task 4, and its result shows.
        await failure(3).locator('button[data-op="retry"]').click();
        const done = failure(3).locator('.outcome[data-state="done"]');
        await done.waitFor({ timeout: 15_000 });
        assert.match((await done.locator("span").textContent())!, /^Retried as task 4: done in \d+ ms on worker 1$/);
        assert.equal(await done.locator("pre").textContent(), "finished");
        assert.equal(await failure(3).locator("button").count(), 0, "retried once: no more buttons");

        // Retry the task that fails by its data: it fails again, and says so.
        await failure(1).locator('button[data-op="retry"]').click();
        const again = failure(1).locator('.outcome[data-state="failed"]');
        await again.waitFor({ timeout: 15_000 });
        assert.equal(await again.textContent(), "Retried as task 5: failed again — handler_error: disk full");
        await failure(5).waitFor({ timeout: 15_000 }); // the new failure, with buttons of its own

        // Discard: the server forgets it.
        await failure(2).locator('button[data-op="discard"]').click();
        await waitForText(page, '#failures li[data-id="2"] .outcome', /^Discarded: the server no longer keeps it\.$/);
        const c = await LineClient.connect(server.addr.port);
        await untilReply(c, "/status 2", /^STATUS 2 unknown$/);
        // A refusal is shown, and the buttons stay: task 4 is done, not failed.
        await c.send("/retry 5");
        assert.equal(await c.next(), "ACCEPTED 6 retry of task 5");
        assert.match(await c.next(), /^FAILED 6 handler_error disk full/);
        await c.close();
        await failure(5).locator('button[data-op="retry"]').click();
        const refused = failure(5).locator('.outcome[data-state="error"]');
        await refused.waitFor({ timeout: 15_000 });
        assert.equal(await refused.textContent(), "Not retried: conflict — task 5 was retried already, as task 6");
        assert.equal(await failure(5).locator("button").count(), 2, "the buttons stay after a refusal");

        await page.screenshot({ path: `${SCREENSHOTS}/dashboard-operate.png`, fullPage: true });
        assert.deepEqual(problems, [], "no script error, failed load or CSP refusal");
        await page.close();
      });
    } finally {
      await owner.close();
      await server.shutdown(5000);
    }
  },
});

Deno.test("/api/operate and /api/list: over the line protocol, with the token and the same-origin check of the task form", async () => {
  const server = await startServer({
    http: "127.0.0.1:0",
    workers: 1,
    concurrency: 1,
    token: "ops-token",
    modules: [FIXTURE_HANDLERS],
  });
  const base = `http://127.0.0.1:${server.httpAddr!.port}`;
  const auth = { authorization: "Bearer ops-token" };
  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}/api/operate`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  const lines = async (r: Response) => (await r.text()).trimEnd().split("\n").map((l) => JSON.parse(l));
  const owner = await LineClient.connect(server.addr.port);
  try {
    await owner.send("/auth ops-token", "/task slow 30000", "/task slow 100", "/task fail nope");
    assert.deepEqual(await owner.take(4), [
      "OK",
      "ACCEPTED 1 slow task queued",
      "ACCEPTED 2 slow task queued",
      "ACCEPTED 3 fail task queued",
    ]);
    const listed = await fetch(`${base}/api/list?state=running&state=queued&limit=5`, { headers: auth });
    assert.equal(listed.status, 200);
    const lists = await listed.json();
    assert.deepEqual(lists.running.map((t: { id: number }) => t.id), [1]);
    assert.deepEqual(lists.queued.map((t: { id: number }) => t.id), [2, 3]);

    const cancelled = await post({ op: "cancel", task_id: 2 });
    assert.equal(cancelled.headers.get("content-type"), "application/x-ndjson; charset=utf-8");
    assert.deepEqual(await lines(cancelled), [{ type: "ok", id: "dashboard", task_id: 2, state: "cancelled" }]);
    assert.match(await owner.next(), /^FAILED 2 cancelled /);
    await post({ op: "cancel", task_id: 1 }).then((r) => r.body?.cancel());
    assert.match(await owner.next(), /^FAILED 1 cancelled /);
    assert.match(await owner.next(), /^FAILED 3 handler_error nope/);

    const retried = await lines(await post({ op: "retry", task_id: 2 }));
    assert.deepEqual(retried.map((m: { type: string; task_id: number }) => [m.type, m.task_id]), [
      ["accepted", 4],
      ["done", 4],
    ]);
    assert.equal(retried[1].result, "finished");
    const unknown = await lines(await post({ op: "discard", task_id: 99 }));
    assert.equal(unknown.length, 1);
    assert.equal(unknown[0].error.code, "not_found");
    assert.deepEqual(await lines(await post({ op: "discard", task_id: 3 })), [
      { type: "ok", id: "dashboard", task_id: 3, state: "discarded" },
    ]);

    // What the form's checks refuse, the buttons' refuse too.
    assert.equal((await post({ op: "cancel", task_id: 1 }, { origin: "http://elsewhere.example" })).status, 403);
    const noToken = await fetch(`${base}/api/operate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"op":"cancel","task_id":1}',
    });
    assert.equal(noToken.status, 401);
    await noToken.body?.cancel();
    for (const body of [{ op: "explode", task_id: 1 }, { op: "retry", task_id: "1" }, { op: "retry", task_id: 0 }]) {
      const r = await post(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(await r.text(), /^send \{"op": "cancel" \| "retry" \| "discard", "task_id": <id>\}/);
    }
    const wrongType = await post({ op: "retry", task_id: 1 }, { "content-type": "text/plain" });
    assert.equal(wrongType.status, 415);
    await wrongType.body?.cancel();
    const get = await fetch(`${base}/api/operate`, { headers: auth });
    assert.equal(get.status, 405);
    await get.body?.cancel();
    for (const query of ["", "?state=done", "?state=failed&limit=0", "?state=failed&limit=5000"]) {
      const r = await fetch(`${base}/api/list${query}`, { headers: auth });
      assert.equal(r.status, 400, query);
      await r.body?.cancel();
    }
    const failed = await (await fetch(`${base}/api/list?state=failed`, { headers: auth })).json();
    assert.deepEqual(failed.failed.map((t: { id: number }) => t.id), [1], "2 was retried, 3 discarded");
  } finally {
    await owner.close();
    await server.shutdown(5000);
  }
});

// The asynctask dashboard: one live feed of server-sent events (/api/events) — the last 15
// minutes first, then a snapshot a second — drawn with uPlot; a form that submits a task
// (/api/submit) and shows its replies as they arrive; the running and queued tasks (/api/list,
// asked only while there are some) with a Cancel button each; and Retry and Discard buttons on
// the recent failures (/api/operate), a retry showing the new task's result. Plain script, no
// build step: every text from the server is set with textContent, never as HTML.
"use strict";

(() => {
  const HISTORY = 900;
  const PALETTE = ["#2f6fde", "#e0620d", "#1f8a4c", "#9b51e0", "#c53030", "#0f9fb5", "#b7791f", "#d0458c"];
  const $ = (id) => document.getElementById(id);

  /** What the charts show: aligned arrays, oldest first; times in seconds. */
  const series = { t: [], queued: [], running: [], connections: [], tasks: new Map() };
  let names = [];
  let charts = {};
  let detailed = false;
  let last;

  // --- formatting
  const int = new Intl.NumberFormat();
  const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  function num(v) {
    return v === null || v === undefined ? "–" : int.format(v);
  }
  function bytes(v) {
    if (!v) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${v.toFixed(i === 0 || v >= 100 ? 0 : 1)} ${units[i]}`;
  }
  function ms(v) {
    return v === null || v === undefined ? "–" : v >= 100 ? int.format(Math.round(v)) : String(Math.round(v * 10) / 10);
  }
  function duration(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`;
  }
  function color(i) {
    return PALETTE[i % PALETTE.length];
  }
  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // --- charts
  function chartOptions(el, lines, yLabel) {
    const stroke = cssVar("--muted");
    const grid = { stroke: cssVar("--grid"), width: 1 };
    return {
      width: Math.max(200, el.clientWidth),
      height: el.clientWidth < 500 ? 180 : 220,
      scales: { x: { time: true } },
      axes: [
        {
          stroke,
          grid,
          ticks: grid,
          space: 70,
          incrs: [1, 5, 10, 15, 30, 60, 120, 300, 600, 900],
          values: (_u, splits) => splits.map((s) => clock.format(new Date(s * 1000))),
        },
        { stroke, grid, ticks: grid, size: 56, label: yLabel, labelSize: 18 },
      ],
      series: [{}, ...lines],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
  }

  function line(label, i, dash) {
    return {
      label,
      stroke: color(i),
      width: 2,
      spanGaps: true,
      points: { show: false },
      ...(dash ? { dash: [5, 4] } : {}),
    };
  }

  function loadData() {
    return [series.t, series.queued, series.running, series.connections];
  }
  function rateData() {
    return [series.t, ...names.map((n) => series.tasks.get(n).rate)];
  }
  function latencyData() {
    return [series.t, ...names.flatMap((n) => [series.tasks.get(n).p50, series.tasks.get(n).p99])];
  }

  function build() {
    if (typeof uPlot !== "function") return;
    for (const c of Object.values(charts)) c.destroy();
    const load = $("chart-load"), rate = $("chart-rate"), latency = $("chart-latency");
    charts = {
      load: new uPlot(
        chartOptions(load, [line("queued", 0), line("running", 1), line("connections", 2)], "count"),
        loadData(),
        load,
      ),
      rate: new uPlot(chartOptions(rate, names.map((n, i) => line(n, i)), "tasks/s"), rateData(), rate),
      latency: new uPlot(
        chartOptions(latency, names.flatMap((n, i) => [line(`${n} p50`, i), line(`${n} p99`, i, true)]), "ms"),
        latencyData(),
        latency,
      ),
    };
  }

  function redraw() {
    if (!charts.load) return build();
    charts.load.setData(loadData());
    charts.rate.setData(rateData());
    charts.latency.setData(latencyData());
  }

  new ResizeObserver(() => {
    for (const [key, c] of Object.entries(charts)) {
      const el = $(`chart-${key}`);
      c.setSize({ width: Math.max(200, el.clientWidth), height: el.clientWidth < 500 ? 180 : 220 });
    }
  }).observe(document.querySelector("main"));
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", build);

  // --- the feed
  function taskSeries(name) {
    let s = series.tasks.get(name);
    if (!s) {
      const blank = () => series.t.map(() => null);
      s = { rate: blank(), p50: blank(), p99: blank() };
      series.tasks.set(name, s);
    }
    return s;
  }

  function setNames() {
    const now = [...series.tasks.keys()].sort();
    if (now.join("\n") !== names.join("\n")) {
      names = now;
      build();
    }
  }

  function onHistory(h) {
    series.t = h.t.map((t) => t / 1000);
    series.queued = h.queued;
    series.running = h.running;
    series.connections = h.connections;
    series.tasks = new Map(Object.entries(h.tasks));
    names = [];
    setNames();
  }

  function onSnapshot(s) {
    // The first snapshot repeats the history's last sample.
    if (series.t.length > 0 && series.t[series.t.length - 1] >= s.t / 1000) {
      show(s);
      return;
    }
    series.t.push(s.t / 1000);
    series.queued.push(s.queued);
    series.running.push(s.running);
    series.connections.push(s.connections);
    const seen = new Set();
    for (const t of s.tasks) {
      const ts = taskSeries(t.name);
      ts.rate.push(t.rate);
      ts.p50.push(t.p50);
      ts.p99.push(t.p99);
      seen.add(t.name);
    }
    for (const [name, ts] of series.tasks) {
      if (!seen.has(name)) {
        ts.rate.push(null);
        ts.p50.push(null);
        ts.p99.push(null);
      }
    }
    if (series.t.length > HISTORY) {
      const cut = series.t.length - HISTORY;
      for (const key of ["t", "queued", "running", "connections"]) series[key].splice(0, cut);
      for (const ts of series.tasks.values()) for (const a of Object.values(ts)) a.splice(0, cut);
    }
    setNames();
    redraw();
    show(s);
  }

  function setTile(id, text) {
    $(id).querySelector(".value").textContent = text;
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.append(td);
  }

  function show(s) {
    last = s;
    detailed = s.detailed;
    const pill = $("status");
    const state = s.draining ? "draining" : s.ready ? "ready" : "not-ready";
    pill.dataset.state = state;
    pill.textContent = s.draining ? "draining — stopping" : s.ready ? "ready" : "not ready";
    $("uptime").textContent = `up ${duration(s.uptime_s)}`;
    setTile("tile-queued", num(s.queued));
    setTile("tile-running", num(s.running));
    setTile("tile-connections", num(s.connections));
    setTile("tile-done", num(s.done));
    setTile("tile-failed", num(s.failed));
    setTile("tile-refused", num(s.refused));
    setTile("tile-rate", num(Math.round(s.tasks.reduce((n, t) => n + t.rate, 0) * 10) / 10));
    setTile("tile-rss", bytes(s.rss));

    const workers = document.createElement("tbody");
    for (const w of s.workers) {
      const tr = document.createElement("tr");
      tr.dataset.worker = w.id;
      cell(tr, w.id);
      // The pool's own word on its worker, when /stats has one; else what its load says.
      const ws = w.state ?? (w.running > 0 ? "busy" : "idle");
      cell(tr, ws, ws === "busy" ? "busy" : "");
      cell(tr, num(w.running), "num");
      cell(tr, num(w.done), "num");
      cell(tr, num(w.failed), "num");
      cell(tr, num(w.restarts), "num");
      cell(tr, w.memory_bytes ? `${(w.memory_bytes / 1048576).toFixed(0)} MiB` : "–", "num");
      workers.append(tr);
    }
    $("workers").querySelector("tbody").replaceWith(workers);

    const tasks = document.createElement("tbody");
    for (const t of s.tasks) {
      const tr = document.createElement("tr");
      tr.dataset.task = t.name;
      cell(tr, t.name);
      for (const v of [t.accepted, t.done, t.failed, t.retried, t.rate]) cell(tr, num(v), "num");
      cell(tr, ms(t.p50), "num");
      cell(tr, ms(t.p99), "num");
      tasks.append(tr);
    }
    $("tasks").querySelector("tbody").replaceWith(tasks);

    $("latency-note").hidden = detailed;
    const note = $("failures-note");
    if (!detailed) {
      note.hidden = false;
      const failed = s.tasks.filter((t) => t.failed > 0).map((t) => `${t.name}: ${num(t.failed)}`);
      note.textContent = "This server does not keep failure details yet; failed tasks by name: " +
        (failed.length > 0 ? failed.join(", ") : "none") + ".";
      renderFailures([]);
    } else if (s.failures.length === 0) {
      note.hidden = false;
      note.textContent = "No failures since the start.";
      renderFailures([]);
    } else {
      note.hidden = true;
      renderFailures(s.failures);
    }
    pollRunning(s);
  }

  // --- acting on tasks: Retry and Discard on the failures, Cancel on the running and queued tasks

  function toLogin() {
    location.href = `/login?next=${encodeURIComponent(location.pathname)}`;
  }

  /** Calls onReply with each JSON line of an NDJSON response, as it arrives. */
  async function readReplies(r, onReply) {
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += value;
      let nl;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (line) onReply(JSON.parse(line));
      }
    }
  }

  /** POSTs an operation on task `id` (/api/operate); each reply goes to onReply, an HTTP refusal as an error reply. */
  async function operate(op, id, onReply) {
    const r = await fetch("/api/operate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ op, task_id: id }),
    });
    if (r.status === 401) return toLogin();
    if ((r.headers.get("content-type") ?? "").includes("ndjson")) return readReplies(r, onReply);
    const text = await r.text();
    try {
      onReply(JSON.parse(text));
    } catch {
      onReply({ type: "error", error: { code: `HTTP ${r.status}`, message: text.trim() } });
    }
  }

  /** What this page did to a task, by its id — `{ state, text, result? }` — kept while the page is open. */
  const acted = new Map();
  let failuresKey = "";

  function actionButtons(id, ops) {
    const box = document.createElement("span");
    box.className = "actions";
    for (const op of ops) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = op === "retry" ? "small" : "small secondary";
      b.dataset.op = op;
      b.dataset.id = id;
      b.textContent = op[0].toUpperCase() + op.slice(1);
      box.append(b);
    }
    return box;
  }

  function outcome(a) {
    const div = document.createElement("div");
    div.className = "outcome";
    div.dataset.state = a.state;
    const p = document.createElement("span");
    p.textContent = a.text;
    div.append(p);
    if (a.result !== undefined) {
      const pre = document.createElement("pre");
      pre.textContent = typeof a.result === "string" ? a.result : JSON.stringify(a.result, null, 2);
      div.append(pre);
    }
    return div;
  }

  /** The failures list; redrawn only when it or what was done to its tasks changed (a redraw would eat a click). */
  function renderFailures(failures) {
    const key = JSON.stringify([failures.map((f) => [f.id, f.at]), [...acted]]);
    if (key === failuresKey) return;
    failuresKey = key;
    $("failures").replaceChildren(...failures.map((f) => {
      const li = document.createElement("li");
      li.dataset.id = f.id;
      const code = document.createElement("code");
      code.textContent = f.code;
      li.append(`task ${f.id} (${f.task}) `, code, ` ${f.message} `);
      const when = document.createElement("span");
      when.className = "muted";
      when.textContent = new Date(f.at).toLocaleTimeString();
      li.append(when);
      const a = acted.get(f.id);
      // After a refusal the buttons stay, to try again; while it runs or once it is done, they go.
      if (!a || a.state === "error") li.append(" ", actionButtons(f.id, ["retry", "discard"]));
      if (a) li.append(outcome(a));
      return li;
    }));
  }

  function act(id, state, text, result) {
    acted.set(id, { state, text, result });
    if (last && last.detailed) renderFailures(last.failures);
  }

  async function retry(id) {
    act(id, "pending", "Retrying…");
    let newId;
    let ended = false;
    try {
      await operate("retry", id, (m) => {
        switch (m.type) {
          case "accepted":
            newId = m.task_id;
            act(id, "running", `Retried as task ${newId}; waiting for its result…`);
            break;
          case "progress":
            act(id, "running", `Retried as task ${newId}: ${m.progress}%${m.message ? ` — ${m.message}` : ""}`);
            break;
          case "done":
            ended = true;
            act(id, "done", `Retried as task ${m.task_id}: done in ${m.ms} ms on worker ${m.worker}`, m.result);
            break;
          case "failed":
            ended = true;
            act(id, "failed", `Retried as task ${m.task_id}: failed again — ${m.error.code}: ${m.error.message}`);
            break;
          case "error":
            ended = true;
            act(
              id,
              newId === undefined ? "error" : "failed",
              `${newId === undefined ? "Not retried" : `Task ${newId}`}: ${m.error.code} — ${m.error.message}`,
            );
            break;
        }
      });
      if (!ended && newId !== undefined) {
        act(id, "failed", `Retried as task ${newId}; its result did not come: ask /status ${newId}`);
      }
    } catch (err) {
      act(id, "error", `The request failed: ${err.message}`);
    }
  }

  async function discard(id) {
    act(id, "pending", "Discarding…");
    try {
      await operate("discard", id, (m) => {
        if (m.type === "ok") act(id, "discarded", "Discarded: the server no longer keeps it.");
        else if (m.type === "error") act(id, "error", `Not discarded: ${m.error.code} — ${m.error.message}`);
      });
    } catch (err) {
      act(id, "error", `The request failed: ${err.message}`);
    }
  }

  // The running and queued tasks: asked for while the counts say there are some (or the table still shows some).
  const cancels = new Map();
  let runningTasks = [];
  let runningKey = "";
  let listing = false;
  let listedAt = 0;
  let lastCounts = "";

  function pollRunning(s) {
    const counts = `${s.running}/${s.queued}/${s.retrying}`;
    const changed = counts !== lastCounts;
    lastCounts = counts;
    const some = s.running + s.queued + (s.retrying ?? 0) > 0 || runningTasks.length > 0;
    if (s.draining || !some || document.visibilityState !== "visible") return;
    if (changed || Date.now() - listedAt >= 2000) listRunning();
  }

  async function listRunning() {
    if (listing) return;
    listing = true;
    listedAt = Date.now();
    try {
      const r = await fetch("/api/list?state=running&state=queued&limit=20", {
        headers: { accept: "application/json" },
      });
      if (r.status === 401) return toLogin();
      const body = await r.json();
      if (!r.ok) {
        $("running-note").textContent = `The server did not list them: ${body.error.code} — ${body.error.message}`;
        return;
      }
      renderRunning([...body.running, ...body.queued]);
    } catch (err) {
      $("running-note").textContent = `Could not list them: ${err.message}`;
    } finally {
      listing = false;
    }
  }

  function age(t) {
    return duration(Math.max(0, (Date.now() - Date.parse(t.accepted_at)) / 1000));
  }

  function renderRunning(list) {
    runningTasks = list;
    for (const id of cancels.keys()) if (!list.some((t) => t.id === id)) cancels.delete(id);
    $("running-note").hidden = list.length > 0;
    $("running-note").textContent = "Nothing is running or queued.";
    $("running").hidden = list.length === 0;
    const key = JSON.stringify([list.map((t) => [t.id, t.state, t.worker]), [...cancels]]);
    if (key === runningKey) {
      // The same tasks: only their ages move.
      for (const tr of $("running").querySelectorAll("tbody tr")) {
        const t = list.find((t) => String(t.id) === tr.dataset.id);
        if (t) tr.querySelector(".age").textContent = age(t);
      }
      return;
    }
    runningKey = key;
    const tbody = document.createElement("tbody");
    for (const t of list) {
      const tr = document.createElement("tr");
      tr.dataset.id = t.id;
      cell(tr, t.id, "num");
      cell(tr, t.task);
      cell(tr, t.state, t.state === "running" ? "busy" : "");
      cell(tr, t.worker ?? "", "num");
      cell(tr, age(t), "num age");
      const td = document.createElement("td");
      const c = cancels.get(t.id);
      if (!c || c.state === "error") td.append(actionButtons(t.id, ["cancel"]));
      if (c) td.append(outcome(c));
      tr.append(td);
      tbody.append(tr);
    }
    $("running").querySelector("tbody").replaceWith(tbody);
  }

  async function cancel(id) {
    const mark = (state, text) => {
      cancels.set(id, { state, text });
      renderRunning(runningTasks);
    };
    mark("pending", "Cancelling…");
    try {
      await operate("cancel", id, (m) => {
        if (m.type === "ok") mark("done", "Cancelled.");
        else if (m.type === "error") mark("error", `Not cancelled: ${m.error.code} — ${m.error.message}`);
      });
      listRunning();
    } catch (err) {
      mark("error", `The request failed: ${err.message}`);
    }
  }

  function onAction(e) {
    const b = e.target.closest("button[data-op]");
    if (!b) return;
    const id = Number(b.dataset.id);
    b.disabled = true;
    if (b.dataset.op === "retry") retry(id);
    else if (b.dataset.op === "discard") discard(id);
    else if (b.dataset.op === "cancel") cancel(id);
  }

  function connect() {
    const feed = new EventSource("/api/events");
    feed.addEventListener("history", (e) => onHistory(JSON.parse(e.data)));
    feed.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
    feed.addEventListener("error", async () => {
      const pill = $("status");
      pill.dataset.state = "offline";
      pill.textContent = "offline — reconnecting";
      // A session that ran out: the feed cannot tell, a plain request can.
      try {
        const r = await fetch("/api/snapshot", { headers: { accept: "application/json" } });
        if (r.status === 401) location.href = `/login?next=${encodeURIComponent(location.pathname)}`;
      } catch {
        // the server is away; EventSource retries by itself
      }
    });
  }

  // --- the task form
  let tasks = [];
  let dataEdited = false;

  function example(schema) {
    if (!schema || typeof schema !== "object") return '"hello"';
    if (schema.examples && schema.examples.length > 0) return JSON.stringify(schema.examples[0], null, 2);
    if (schema.default !== undefined) return JSON.stringify(schema.default, null, 2);
    const types = { object: "{}", array: "[]", number: "0", integer: "0", boolean: "false", null: "null" };
    return types[Array.isArray(schema.type) ? schema.type[0] : schema.type] ?? '""';
  }

  function chooseTask() {
    const t = tasks.find((t) => t.name === $("task-select").value);
    $("task-description").textContent = t?.description ?? "";
    const box = $("task-schema-box");
    box.hidden = !t?.schema;
    $("task-schema").textContent = t?.schema ? JSON.stringify(t.schema, null, 2) : "";
    if (!dataEdited && t) $("task-data").value = t.schema ? example(t.schema) : '"hello"';
  }

  async function loadTasks() {
    const r = await fetch("/api/tasks", { headers: { accept: "application/json" } });
    if (r.status === 401) return toLogin();
    const body = await r.json();
    tasks = body.tasks;
    $("logout").hidden = !body.token;
    const select = $("task-select");
    select.replaceChildren(...tasks.map((t) => {
      const o = document.createElement("option");
      o.value = t.name;
      o.textContent = t.name;
      return o;
    }));
    chooseTask();
  }

  function output(state, text, result) {
    $("task-output").dataset.state = state;
    $("task-line").textContent = text;
    const pre = $("task-result");
    pre.hidden = result === undefined;
    pre.textContent = result === undefined ? "" : typeof result === "string" ? result : JSON.stringify(result, null, 2);
  }

  function onReply(m) {
    const bar = $("task-progress");
    switch (m.type) {
      case "accepted":
        output("accepted", `Accepted as task ${m.task_id}; waiting for its result…`);
        bar.hidden = false;
        bar.value = 0;
        break;
      case "progress":
        bar.hidden = false;
        bar.value = m.progress;
        output("running", `Task ${m.task_id}: ${m.progress}%${m.message ? ` — ${m.message}` : ""}`);
        break;
      case "done":
        bar.value = 100;
        output(
          "done",
          `Task ${m.task_id} done in ${m.ms} ms on worker ${m.worker} (attempts: ${m.attempts})`,
          m.result,
        );
        break;
      case "failed":
        bar.hidden = true;
        output("failed", `Task ${m.task_id} failed: ${m.error.code} — ${m.error.message}`);
        break;
      case "error":
        bar.hidden = true;
        output("error", `Refused: ${m.error.code} — ${m.error.message}`);
        break;
    }
  }

  async function submit(e) {
    e.preventDefault();
    let data;
    try {
      data = JSON.parse($("task-data").value);
    } catch (err) {
      output("error", `The data is not JSON: ${err.message}. A text goes in double quotes: "hello".`);
      return;
    }
    const button = $("task-submit");
    button.disabled = true;
    $("task-progress").hidden = true;
    output("sending", "Sending…");
    try {
      const r = await fetch("/api/submit", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ task: $("task-select").value, data }),
      });
      if (r.status === 401) return toLogin();
      if (!(r.headers.get("content-type") ?? "").includes("ndjson")) {
        const text = await r.text();
        try {
          onReply(JSON.parse(text));
        } catch {
          output("error", `HTTP ${r.status}: ${text}`);
        }
        return;
      }
      await readReplies(r, onReply);
    } catch (err) {
      output("error", `The request failed: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  $("task-select").addEventListener("change", chooseTask);
  $("task-data").addEventListener("input", () => (dataEdited = true));
  $("submit").addEventListener("submit", submit);
  $("failures").addEventListener("click", onAction);
  $("running").addEventListener("click", onAction);

  build();
  connect();
  loadTasks().catch((err) => output("error", `Could not load the tasks: ${err.message}`));
  // For a look from the browser's console.
  globalThis.asynctaskDashboard = {
    series,
    get last() {
      return last;
    },
  };
})();

/**
 * The interactive client in a real pseudo-terminal (`script` from util-linux) against a real
 * server: what it tells locally, how it ends its lines, how it shows JSON replies and `/stats`, and
 * its Chinese. Screens are replayed (see `client_screen.ts`) to assert on what a person sees.
 */
import assert from "node:assert/strict";
import { openTerminal, ROOT, startServer, type Terminal, terminalTest } from "./helpers.ts";
import { replay } from "./client_screen.ts";
import { parseTasks } from "../task/config.ts";

/**
 * Runs `main.ts client` with `args` in a terminal, in the checkout's root (where the README has it
 * run), in the locale `lang` (none of the other locale variables set).
 */
function client(args: string, lang = "C.UTF-8"): Promise<Terminal> {
  return openTerminal(
    `cd ${ROOT} && env -u LC_ALL -u LC_MESSAGES -u LANGUAGE -u INIT_CWD LANG=${lang} ${Deno.execPath()} run -A main.ts client ${args}`,
  );
}

/** The screen's non-empty lines, as shown. */
function shown(term: Terminal): string[] {
  return replay(term.screen).lines.filter((l) => l !== "");
}

terminalTest(
  "interactive: /status without an id and unknown commands are told locally, not sent; only refused tasks count",
  async () => {
    const server = await startServer({ smsDelayMs: 50 });
    const port = server.addr.port;
    try {
      const term = await client(`--port ${port}`);
      try {
        await term.waitFor(/phone number> /, "prompt");
        const steps: [string, RegExp][] = [
          ["/status", /usage: \/status <task id>, a whole number like 17 \(nothing was sent\)/],
          ["/status abc", /usage: \/status <task id>[^]*usage: \/status <task id>/],
          ["/stat", /unknown command \/stat — did you mean \/stats\? \/help lists the commands \(nothing was sent\)/],
          ["/frobnicate", /unknown command \/frobnicate/],
          ["/ping now", /\/ping takes no argument \(nothing was sent\)/],
          ['{"task": "sms",', /not valid JSON: .* \(nothing was sent\)/],
          // The server refuses this one: shown as it says, but a command is not a task.
          ["/status 99", /ERROR not_found/],
          ["13800138000", /DONE 1 \{"phone":"13800138000"/],
        ];
        for (const [typed, expected] of steps) {
          await term.type(`${typed}\r`);
          await term.waitFor(expected, `the answer to ${typed}`);
        }
        await term.type("\x04");
        await term.waitFor(/1 accepted, 1 done, 0 failed, 0 refused/, "summary");
        assert.equal((await term.status).code, 0, term.screen);
      } finally {
        await term.close();
      }
      assert.equal(server.stats().accepted, 1);

      // A task the server refuses does count.
      const refused = await client(`--port ${port}`);
      try {
        await refused.waitFor(/phone number> /, "prompt");
        await refused.type("not-a-phone\r");
        await refused.waitFor(/ERROR invalid_data/, "refusal");
        await refused.type("\x04");
        await refused.waitFor(/0 accepted, 0 done, 0 failed, 1 refused/, "summary");
        assert.equal((await refused.status).code, 1);
      } finally {
        await refused.close();
      }
    } finally {
      await server.shutdown(5000);
    }
  },
);

terminalTest(
  "interactive: Ctrl-D's summary is on a line of its own; Ctrl-C ends the prompt line, and the shell starts on a new one",
  async () => {
    const server = await startServer({ smsDelayMs: 50 });
    try {
      const eof = await client(`--port ${server.addr.port}`);
      try {
        await eof.waitFor(/phone number> /, "prompt");
        await eof.type("\x04");
        assert.equal((await eof.status).code, 0);
        await eof.waitFor(/refused/, "summary");
        const screen = replay(eof.screen);
        assert.equal(screen.lines.filter((l) => l !== "").at(-1), "0 accepted, 0 done, 0 failed, 0 refused");
        assert.deepEqual([screen.col, screen.lines[screen.row]], [0, ""], "the cursor waits on a fresh line");
      } finally {
        await eof.close();
      }

      const interrupted = await client(`--port ${server.addr.port}`);
      try {
        await interrupted.waitFor(/phone number> /, "prompt");
        await interrupted.type("1390");
        await interrupted.waitFor(/1390/, "typed text");
        await interrupted.type("\x03");
        assert.equal((await interrupted.status).code, 130);
        const screen = replay(interrupted.screen);
        assert.deepEqual([screen.col, screen.lines[screen.row] ?? ""], [0, ""], JSON.stringify(interrupted.screen));
        assert.ok(screen.lines.includes("phone number> 1390^C"), screen.lines.join("\n"));
      } finally {
        await interrupted.close();
      }
    } finally {
      await server.shutdown(5000);
    }
  },
);

terminalTest(
  "interactive: when the server closes with a task outstanding, it names the task and how to look it up",
  async () => {
    const server = await startServer({});
    const port = server.addr.port;
    try {
      const term = await client(`--port ${port}`);
      try {
        await term.waitFor(/phone number> /, "prompt");
        await term.type("/task sleep 2000\r");
        await term.waitFor(/ACCEPTED 1 sleeping 2000 ms/, "ACCEPTED");
        await term.type("/quit\r");
        await term.waitFor(/BYE/, "BYE");
        assert.equal((await term.status).code, 1);
        const lines = shown(term);
        assert.deepEqual(lines.slice(-2), [
          `the server closed the connection with 1 task(s) unfinished (ids 1); look them up with \`/status <id>\` in \`./deno task client --port ${port}\``,
          "1 accepted, 0 done, 0 failed, 0 refused, 1 without a result",
        ]);
      } finally {
        await term.close();
      }
    } finally {
      await server.shutdown(5000);
    }
  },
);

terminalTest(
  "interactive: a typed JSON request's replies are shown like text ones, its progress as the same bar",
  async () => {
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(
      `${dir}/steps.ts`,
      `export default async (_d: unknown, ctx: { progress(p: number, m?: string): void }) => {
  for (const p of [30, 70]) {
    ctx.progress(p, "step " + p);
    await new Promise((r) => setTimeout(r, 300));
  }
  return "finished";
};`,
    );
    const server = await startServer({
      tasks: parseTasks({ steps: { kind: "module", module: "./steps.ts" } }, `${dir}/asynctask.json`),
      defaultTask: "steps",
      workers: 1,
    });
    const term = await client(`--task steps --port ${server.addr.port}`);
    try {
      await term.waitFor(/steps payload> /, "prompt");
      await term.type('{"task":"steps","data":1,"id":"j1"}\r');
      await term.waitFor(/task 1 \[███░░░░░░░\] {2}30% step 30/, "a bar for the JSON task");
      await term.waitFor(/DONE 1 finished \(id "j1", worker 1, \d+ ms\)/, "DONE in the text form");
      await term.type("go\r");
      await term.waitFor(/task 2 \[███░░░░░░░\] {2}30% step 30/, "the same bar for the text task");
      await term.waitFor(/DONE 2 finished\r?\n/, "DONE 2");
      const lines = shown(term);
      assert.ok(lines.includes('ACCEPTED 1 (id "j1")'), lines.join("\n"));
      assert.ok(!term.screen.includes('{"type":'), "no raw JSON reply on the screen");
      await term.type("\x04");
      assert.equal((await term.status).code, 0);
    } finally {
      await term.close();
      await server.shutdown(5000);
      await Deno.remove(dir, { recursive: true });
    }
  },
);

terminalTest(
  "interactive: /stats is an aligned block with per-task counts and workers; --json shows the raw line",
  async () => {
    const server = await startServer({ smsDelayMs: 20, workers: 2 });
    try {
      const term = await client(`--port ${server.addr.port}`);
      try {
        await term.waitFor(/phone number> /, "prompt");
        await term.type("13800138000\r");
        await term.waitFor(/DONE 1/, "DONE");
        await term.type("/stats\r");
        await term.waitFor(/workers:[^]*phone number> /, "the stats block, then the prompt");
        const lines = shown(term);
        const at = lines.indexOf("STATS");
        assert.ok(at >= 0, lines.join("\n"));
        const block = lines.slice(at + 1, lines.findIndex((l, i) => i > at && l.startsWith("phone number>")));
        // Counters: two-space indent, names padded to one column, values after it.
        const counters = block.slice(0, block.findIndex((l) => l.endsWith(":")));
        const valueColumn = counters.map((l) => /^ {2}\S+ +/.exec(l)?.[0].length);
        assert.ok(counters.length >= 5 && new Set(valueColumn).size === 1, block.join("\n"));
        assert.match(block.find((l) => /^ {2}accepted /.test(l)) ?? "", /^ {2}accepted +1$/);
        // Per task: a header row, then one row per task, numbers right-aligned under it.
        const byTask = block.indexOf("  by_task:");
        assert.ok(byTask > 0, block.join("\n"));
        assert.match(block[byTask + 1], /^ {4} +accepted +done +failed/);
        const sms = block.find((l) => /^ {4}sms /.test(l)) ?? "";
        assert.equal(sms.length, block[byTask + 1].length, `${block[byTask + 1]}\n${sms}`);
        const workers = block.indexOf("  workers:");
        assert.match(block[workers + 1], /^ {4}id +running +done +failed +restarts +memory MiB +state$/);
        assert.match(block[workers + 2], /^ {4}1 +\d+ +\d+ +\d+ +\d+ +\d+ +(starting|idle|busy)$/);
        assert.match(block[workers + 3], /^ {4}2 +\d+ +\d+ +\d+ +\d+ +\d+ +(starting|idle|busy)$/);
        await term.type("\x04");
        assert.equal((await term.status).code, 0);
      } finally {
        await term.close();
      }

      const json = await client(`--json --port ${server.addr.port}`);
      try {
        await json.waitFor(/phone number> /, "prompt");
        await json.type("/stats\r");
        await json.waitFor(/\{"type":"stats",.*"workers":\[/, "the raw stats line");
        await json.type("\x04");
        assert.equal((await json.status).code, 0);
      } finally {
        await json.close();
      }
    } finally {
      await server.shutdown(5000);
    }
  },
);

terminalTest(
  "interactive with LANG=zh_CN.UTF-8: prompt, hints and summary in Chinese, replies as the server sends them; a full-width number is sent",
  async () => {
    const server = await startServer({ smsDelayMs: 50 });
    try {
      const term = await client(`--port ${server.addr.port}`, "zh_CN.UTF-8");
      try {
        await term.waitFor(/请输入手机号：/, "the Chinese prompt");
        await term.waitFor(
          /已连接到 127\.0\.0\.1:\d+。输入手机号即可发送短信；\/help 查看命令，Ctrl-D 退出。/,
          "greeting",
        );
        await term.type("１３８００１３８０００\r");
        await term.waitFor(/ACCEPTED 1 sending SMS to 13800138000/, "ACCEPTED, as the server says it");
        await term.waitFor(/DONE 1 \{"phone":"13800138000"/, "DONE");
        await term.type("/status\r");
        await term.waitFor(/用法：\/status <任务编号>，一个整数，比如 17（未发送）/, "a local hint in Chinese");
        await term.type("/help\r");
        await term.waitFor(/\/status <编号> +任务的状态和结果/, "help in Chinese");
        await term.type("\x04");
        await term.waitFor(/已受理 1，完成 1，失败 0，被拒 0/, "the summary in Chinese");
        assert.equal((await term.status).code, 0);
        assert.ok(shown(term).includes("已受理 1，完成 1，失败 0，被拒 0"), "the summary has its own line");
      } finally {
        await term.close();
      }
      // Not reaching a server is told in Chinese too, with the command in the words the user runs it with.
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const free = l.addr.port;
      l.close();
      const refused = await client(`--port ${free}`, "zh_CN.UTF-8");
      try {
        assert.equal((await refused.status).code, 2);
        await refused.waitFor(
          new RegExp(
            `\\./deno task client: 无法连接 127\\.0\\.0\\.1:${free}：连接被拒绝——服务器在运行吗？用 \`\\./deno task serve --port ${free}\` 启动它`,
          ),
          "the hint in Chinese",
        );
      } finally {
        await refused.close();
      }
      // LC_ALL wins over LANG, as POSIX says: C is English.
      const english = await openTerminal(
        `env -u LC_MESSAGES LC_ALL=C LANG=zh_CN.UTF-8 ${Deno.execPath()} run -A ${ROOT}main.ts client --port ${server.addr.port}`,
      );
      try {
        await english.waitFor(/phone number> /, "the English prompt");
        await english.type("\x04");
        assert.equal((await english.status).code, 0);
      } finally {
        await english.close();
      }
    } finally {
      await server.shutdown(5000);
    }
  },
);

/**
 * The command line as a user meets it: help, version, and every kind of mistake named with a hint
 * and a non-zero exit.
 */
import assert from "node:assert/strict";
import { ROOT, runCli, spawnServe } from "./helpers.ts";
import denoJson from "../deno.json" with { type: "json" };

Deno.test("--version and --help", async () => {
  const v = await runCli(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, new RegExp(`^asynctask ${denoJson.version.replaceAll(".", "\\.")} \\(commit \\S+, deno `));
  const h = await runCli(["--help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /serve +run the task server/);
  assert.match(h.stdout, /client +send tasks/);
  const none = await runCli([]);
  assert.equal(none.code, 2, "no command is a usage error");
});

Deno.test("serve --help and client --help list every flag with its default", async () => {
  const s = await runCli(["serve", "--help"]);
  assert.equal(s.code, 0);
  for (
    const [flag, def] of [
      ["--host", "127.0.0.1"],
      ["--port", "9501"],
      ["--workers", "4"],
      ["--dispatch", "least-busy"],
      ["--max-line", "1MiB"],
      ["--sms-delay", "5s"],
      ["--result-ttl", "10m"],
      ["--shutdown-timeout", "30s"],
      ["--task", "sms"],
      ["--max-tasks-per-worker", "0"],
    ]
  ) {
    assert.match(
      s.stdout,
      new RegExp(`${flag}\\b[^\\n]*\\n?[^\\n]*?\\(default: ${def}\\)`),
      `${flag} with default ${def}`,
    );
  }
  assert.doesNotMatch(s.stdout, /\(default: \)/, "no default shown for an empty list (--module)");
  assert.match(s.stdout, /--module <path> +load extra task handlers[^\n]*\(repeatable\)\n/);
  const c = await runCli(["client", "--help"]);
  assert.equal(c.code, 0);
  for (const flag of ["--host", "--port", "--send", "--task", "--json"]) assert.match(c.stdout, new RegExp(flag));
});

Deno.test("mistakes are named, with a hint, and exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["srve"], /^asynctask: unknown command "srve" — did you mean "serve"\? Commands are serve, client/],
    // Prefixed once, with the command as the user ran it (here from source: ./deno task serve).
    [["serve", "--prot", "1"], /^\S*deno task (--config \S+ )?serve: unknown flag --prot — did you mean --port\?/],
    [["serve", "--port", "notaport"], /^\S*deno task (--config \S+ )?serve: --port: "notaport" is not a whole number/],
    [["serve", "--port", "70000"], /--port: 70000 is above the maximum 65535/],
    // The example of a missing value is the flag's default, or a value it typically takes.
    [["serve", "--port"], /--port needs a value, e\.g\. --port 9501$/],
    [["client", "--host"], /--host needs a value, e\.g\. --host 127\.0\.0\.1$/],
    [["client", "--send"], /--send needs a value, e\.g\. --send 13800138000$/],
    [["serve", "--workers"], /--workers needs a value, e\.g\. --workers 4$/],
    [["serve", "--sms-delay", "5"], /--sms-delay: "5" needs a unit; use e\.g\. 5s or 5ms/],
    [["serve", "--max-line", "lots"], /--max-line: "lots" is not a size; use e\.g\. 4096, 64KiB or 1MiB/],
    [
      ["serve", "--dispatch", "round-robbin"],
      /--dispatch: "round-robbin" is not one of least-busy, round-robin, connection \(did you mean "round-robin"\?\)/,
    ],
    [
      ["serve", "--task", "fax", "--port", "0"],
      /--task "fax" is not a task this server knows; use one of sms, echo, sleep/,
    ],
    [["serve", "extra"], /unexpected argument "extra" — run `\S*deno task (--config \S+ )?serve --help` for the list/],
    // A phone number typed without --send.
    [
      ["client", "13800138000"],
      /^\S*deno task (--config \S+ )?client: unexpected argument "13800138000" — to send it as a payload, use --send: `\S*deno task (--config \S+ )?client --send 13800138000`$/,
    ],
    // From source, the load generator is `deno task load` (`deno task bench` is the benchmark suite).
    [["bench", "--conn", "3"], /^\S*deno task (--config \S+ )?load: unknown flag --conn — did you mean --conns\?$/],
    [
      ["bench", "--bogus"],
      /^\S*deno task (--config \S+ )?load: unknown flag --bogus — run `\S*deno task (--config \S+ )?load --help`/,
    ],
    [["client", "--json=yes"], /--json is a switch and takes no value/],
    [
      ["serve", "--config", "/nonexistent/asynctask.json"],
      /cannot read config file \/nonexistent\/asynctask\.json: no such file/,
    ],
    [["client", "--ca", "/nonexistent/ca.pem", "--send", "x"], /cannot read --ca \/nonexistent\/ca\.pem: no such file/],
    [["bench", "--", "--workers", "2"], /serve flags after -- need --spawn/],
    [["serve", "--tls-key", "/tmp/key.pem"], /--tls-cert and --tls-key go together/],
  ];
  for (const [args, expected] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `exit code of ${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr.trim(), expected, args.join(" "));
  }
});

Deno.test("a config file sets flags; the command line wins; a bad key is named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = `${dir}/good.json`;
    await Deno.writeTextFile(good, JSON.stringify({ "port": 1, "task": "echo", "workers": 1 }));
    const server = await spawnServe(["--config", good]); // --port 0 from spawnServe wins over "port": 1
    try {
      const r = await runCli(["client", "--port", String(server.port), "--send", "from config"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /DONE 1 from config/, "the config's task applies");
    } finally {
      server.child.kill("SIGTERM");
      await server.exited();
    }
    const bad = `${dir}/bad.json`;
    await Deno.writeTextFile(bad, JSON.stringify({ "wrokers": 2 }));
    const r = await runCli(["serve", "--config", bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`config file ${bad}: unknown key "wrokers" — did you mean "workers"\\?`));
    await Deno.writeTextFile(bad, JSON.stringify({ "sms-delay": "soon" }));
    const r2 = await runCli(["serve", "--config", bad]);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /config file .*bad\.json: key "sms-delay": "soon" is not a duration/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench with no server says how to start one and exits 2", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  const r = await runCli(["bench", "--port", String(port), "--tasks", "1"]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    new RegExp(
      `^\\S*deno task (--config \\S+ )?load: cannot connect to 127\\.0\\.0\\.1:${port}: connection refused — is the server ` +
        `running\\? Start it with \`\\S*deno task (--config \\S+ )?serve --port ${port}\`, or add --spawn to start one`,
    ),
  );
});

Deno.test("serve on a port already in use says so and exits 2", async () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const r = await runCli(["serve", "--port", String(busy.addr.port)]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      new RegExp(
        `cannot listen on 127\\.0\\.0\\.1:${busy.addr.port}: the address is already in use — .*choose another --port`,
      ),
    );
  } finally {
    busy.close();
  }
});

Deno.test("the benchmark suite (deno task bench): --help, and a usage error exit 2 that points a load flag at deno task load", async () => {
  const suite = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}bench/suite.ts`, ...args],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  const dec = new TextDecoder();
  const help = await suite(["--help"]);
  assert.equal(help.code, 0, dec.decode(help.stderr));
  const text = dec.decode(help.stdout);
  assert.match(text, /^Usage: \S*deno task bench \[flags\]\n/);
  for (const flag of ["--quick", "--rounds", "--skip-peers"]) assert.match(text, new RegExp(flag));
  assert.match(text, /the load generator: `\S*deno task load --help`/);
  const conns = await suite(["--conns", "3"]);
  assert.equal(conns.code, 2);
  assert.equal(dec.decode(conns.stdout), "");
  assert.match(
    dec.decode(conns.stderr),
    /^\S*deno task bench: unknown flag --conns — run `\S*deno task bench --help` for the list of flags\n--conns is a flag of the load generator, which drives a running server: `\S*deno task load --conns 3`\n$/,
  );
  const rounds = await suite(["--rounds", "0"]);
  assert.equal(rounds.code, 2);
  assert.match(dec.decode(rounds.stderr), /^\S*deno task bench: --rounds: 0 is below the minimum 1\n$/);
});

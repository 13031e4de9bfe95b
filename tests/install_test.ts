/**
 * install.sh against a fake release served from 127.0.0.1: an archive built here holding a tiny
 * `asynctask` shell script, and its SHA256SUMS. The script runs for real (`sh install.sh`, curl or
 * wget, tar, sha256sum), with HOME and the install directory in a temporary directory.
 */
import assert from "node:assert/strict";

/** The repository root (not from helpers.ts: this test needs none of the server's modules). */
const ROOT = new URL("../", import.meta.url).pathname;

const VERSION = "9.9.9";
const unix = Deno.build.os === "linux" || Deno.build.os === "darwin";
const TARGET = `${Deno.build.arch}-${Deno.build.os === "darwin" ? "apple-darwin" : "unknown-linux-gnu"}`;
const ARCHIVE = `asynctask-${VERSION}-${TARGET}.tar.gz`;
const SCRIPT = `#!/bin/sh\necho "asynctask ${VERSION} (commit fake123, deno test, ${TARGET})"\n`;

/** Runs a program; its exit code and output. */
async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; clearEnv?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, { args, ...opts, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The archive a release would hold for this machine: `asynctask-<v>-<target>/{asynctask,README.md}`. */
async function buildArchive(dir: string): Promise<Uint8Array<ArrayBuffer>> {
  const name = ARCHIVE.replace(/\.tar\.gz$/, "");
  await Deno.mkdir(`${dir}/stage/${name}`, { recursive: true });
  await Deno.writeTextFile(`${dir}/stage/${name}/asynctask`, SCRIPT, { mode: 0o755 });
  await Deno.writeTextFile(`${dir}/stage/${name}/README.md`, "# asynctask\n");
  const tar = await run("tar", ["-C", `${dir}/stage`, "-czf", `${dir}/${ARCHIVE}`, name]);
  assert.equal(tar.code, 0, tar.stderr);
  return await Deno.readFile(`${dir}/${ARCHIVE}`);
}

/** A release server on 127.0.0.1 in GitHub's layout: `/releases/latest/download/<f>`, `/releases/download/v<v>/<f>`. */
function serveRelease(files: Record<string, Uint8Array<ArrayBuffer>>) {
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    requests.push(path);
    const m = /^\/releases\/(?:latest\/download|download\/v([^/]+))\/([^/]+)$/.exec(path);
    const file = m && (m[1] === undefined || m[1] === VERSION) ? files[m[2]] : undefined;
    return file ? new Response(file) : new Response("Not Found", { status: 404 });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/releases`, requests, close: () => server.shutdown() };
}

/** A temporary HOME, a release server with `files`, and a way to run install.sh against them. */
async function withRelease(
  files: (archive: Uint8Array<ArrayBuffer>) => Promise<Record<string, Uint8Array<ArrayBuffer>>>,
  fn: (ctx: {
    home: string;
    requests: string[];
    install: (env?: Record<string, string>, path?: string) => Promise<{ code: number; stdout: string; stderr: string }>;
  }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "asynctask-install-" });
  const home = `${dir}/home`;
  await Deno.mkdir(home);
  const server = await serveRelease(await files(await buildArchive(dir)));
  try {
    await fn({
      home,
      requests: server.requests,
      // A clean environment: no proxy settings (127.0.0.1 must not go through one), no ASYNCTASK_* of the caller.
      install: (env = {}, path = Deno.env.get("PATH") ?? "/usr/bin:/bin") =>
        run("sh", [`${ROOT}install.sh`], {
          cwd: dir,
          env: { PATH: path, HOME: home, ASYNCTASK_DOWNLOAD_URL: server.url, ...env },
          clearEnv: true,
        }),
    });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const encoder = new TextEncoder();
/** SHA256SUMS as `sha256sum` writes it, with another platform's archive beside ours. */
const sums = async (archive: Uint8Array<ArrayBuffer>, hash?: string) =>
  encoder.encode(
    `${"ab".repeat(32)}  asynctask-${VERSION}-x86_64-pc-windows-msvc.zip\n` +
      `${hash ?? await sha256(archive)}  ${ARCHIVE}\n`,
  );
const goodRelease = async (archive: Uint8Array<ArrayBuffer>) => ({
  [ARCHIVE]: archive,
  SHA256SUMS: await sums(archive),
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "install.sh: the latest release, verified, into ~/.local/bin; says it is not on PATH; the binary runs",
  ignore: !unix,
  fn: () =>
    withRelease(goodRelease, async ({ home, requests, install }) => {
      const r = await install();
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const exe = `${home}/.local/bin/asynctask`;
      assert.ok((await Deno.stat(exe)).mode! & 0o100, "installed executable");
      assert.match(r.stdout, new RegExp(`${ARCHIVE.replaceAll(".", "\\.")} verified`));
      assert.match(r.stdout, new RegExp(`^asynctask ${VERSION} \\(commit fake123`, "m"), "prints the --version");
      assert.match(r.stdout, /is not on your PATH[^\n]*\n\s+export PATH=/);
      // The latest release's SHA256SUMS names the version; the archive comes from that version's own URL.
      assert.deepEqual(requests, ["/releases/latest/download/SHA256SUMS", `/releases/download/v${VERSION}/${ARCHIVE}`]);
      const ran = await run(exe, ["--version"]);
      assert.equal(ran.code, 0);
      assert.match(ran.stdout, new RegExp(`^asynctask ${VERSION} `));
      assert.deepEqual([...Deno.readDirSync(`${home}/.local/bin`)].map((e) => e.name), ["asynctask"], "no leftovers");
    }),
});

Deno.test({
  name: "install.sh: ASYNCTASK_VERSION and ASYNCTASK_INSTALL_DIR (on PATH); installs over an older copy",
  ignore: !unix,
  fn: () =>
    withRelease(goodRelease, async ({ home, requests, install }) => {
      const bin = `${home}/bin`;
      await Deno.mkdir(bin);
      await Deno.writeTextFile(`${bin}/asynctask`, "#!/bin/sh\necho old\n", { mode: 0o755 });
      const r = await install(
        { ASYNCTASK_VERSION: `v${VERSION}`, ASYNCTASK_INSTALL_DIR: bin },
        `${bin}:${Deno.env.get("PATH")}`,
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /is on your PATH/);
      assert.equal(await Deno.readTextFile(`${bin}/asynctask`), SCRIPT);
      assert.deepEqual(requests, [
        `/releases/download/v${VERSION}/SHA256SUMS`,
        `/releases/download/v${VERSION}/${ARCHIVE}`,
      ]);
      assert.ok(!(await exists(`${home}/.local`)), "nothing in ~/.local");
    }),
});

Deno.test({
  name: "install.sh: a checksum mismatch is refused, with a message, and nothing is installed",
  ignore: !unix,
  fn: () =>
    withRelease(
      async (archive) => ({ [ARCHIVE]: archive, SHA256SUMS: await sums(archive, "0".repeat(64)) }),
      async ({ home, install }) => {
        const r = await install();
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /checksum mismatch for asynctask-.*refusing to install it; nothing was installed/);
        assert.match(r.stderr, new RegExp(`SHA256SUMS says ${"0".repeat(64)}`));
        assert.ok(!(await exists(`${home}/.local/bin/asynctask`)), "not installed");
        const left = await exists(`${home}/.local/bin`) ? [...Deno.readDirSync(`${home}/.local/bin`)] : [];
        assert.deepEqual(left, [], "no partial file left");
      },
    ),
});

Deno.test({
  name: "install.sh: a version that does not exist (HTTP 404) is a clear error",
  ignore: !unix,
  fn: () =>
    withRelease(goodRelease, async ({ home, install }) => {
      const r = await install({ ASYNCTASK_VERSION: "1.2.3" });
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /there is no release 1\.2\.3: .*\/download\/v1\.2\.3\/SHA256SUMS was not found \(HTTP 404\)/,
      );
      assert.match(r.stderr, /Check the version/);
      assert.ok(!(await exists(`${home}/.local/bin/asynctask`)));
    }),
});

Deno.test({
  name: "install.sh: an archive missing from the release (HTTP 404) is a clear error",
  ignore: !unix,
  fn: () =>
    withRelease(async (archive) => ({ SHA256SUMS: await sums(archive) }), async ({ home, install }) => {
      const r = await install();
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`could not download .*/${ARCHIVE.replaceAll(".", "\\.")}: HTTP 404`));
      assert.ok(!(await exists(`${home}/.local/bin/asynctask`)));
    }),
});

Deno.test({
  name: "install.sh: an unsupported platform (uname says FreeBSD, or sparc64) is a clear error",
  ignore: !unix,
  fn: () =>
    withRelease(goodRelease, async ({ home, requests, install }) => {
      const fake = `${home}/fake-uname`;
      await Deno.mkdir(fake);
      for (
        const [os, arch, message] of [["FreeBSD", "x86_64", /operating system FreeBSD/], [
          "Linux",
          "sparc64",
          /processor sparc64/,
        ]] as const
      ) {
        await Deno.writeTextFile(
          `${fake}/uname`,
          `#!/bin/sh\ncase "$1" in -s) echo ${os} ;; -m) echo ${arch} ;; *) echo ${os} ;; esac\n`,
          { mode: 0o755 },
        );
        const r = await install({}, `${fake}:${Deno.env.get("PATH")}`);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /no release binary for the/);
        assert.match(r.stderr, message);
        assert.match(r.stderr, /from source/);
      }
      assert.deepEqual(requests, [], "nothing downloaded");
      assert.ok(!(await exists(`${home}/.local/bin/asynctask`)));
    }),
});

/** A directory of links to the programs install.sh uses, curl left out; undefined when one is missing here. */
async function pathWithoutCurl(dir: string): Promise<string | undefined> {
  const tools = [
    "sh",
    "uname",
    "mktemp",
    "rm",
    "sed",
    "head",
    "tail",
    "tr",
    "cut",
    "tar",
    "gzip",
    "sha256sum",
    "mkdir",
    "cp",
    "chmod",
    "mv",
    "ls",
    "wget",
  ];
  await Deno.mkdir(dir, { recursive: true });
  for (const tool of tools) {
    const found = await run("sh", ["-c", `command -v ${tool}`]);
    const path = found.stdout.trim();
    if (found.code !== 0 || !path.startsWith("/")) return undefined;
    await Deno.symlink(path, `${dir}/${tool}`);
  }
  return dir;
}

const hasWget = unix && (await run("sh", ["-c", "command -v wget"])).code === 0;
Deno.test({
  name: hasWget
    ? "install.sh: with wget instead of curl, installs, and reports a 404"
    : "install.sh: with wget instead of curl — SKIPPED: wget is not installed here",
  ignore: !hasWget,
  fn: () =>
    withRelease(goodRelease, async ({ home, install }) => {
      const path = await pathWithoutCurl(`${home}/no-curl`);
      assert.ok(path, "sh, tar, sha256sum and the rest are on PATH");
      const r = await install({}, path);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(await Deno.readTextFile(`${home}/.local/bin/asynctask`), SCRIPT);
      const missing = await install({ ASYNCTASK_VERSION: "1.2.3" }, path);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /there is no release 1\.2\.3: .*\(HTTP 404\)/);
    }),
});

const shellcheck = unix ? await run("sh", ["-c", "command -v shellcheck"]) : undefined;
Deno.test({
  name: shellcheck?.code === 0
    ? "install.sh passes shellcheck as POSIX sh"
    : "install.sh passes shellcheck — SKIPPED: shellcheck is not installed (apt-get install shellcheck)",
  ignore: shellcheck?.code !== 0,
  async fn() {
    const r = await run("shellcheck", ["--shell=sh", `${ROOT}install.sh`]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  },
});

Deno.test({
  name:
    "install.sh from a clone names no repository: it refuses, saying how to name one; a published copy names its own",
  ignore: !unix,
  async fn() {
    const home = await Deno.makeTempDir({ prefix: "asynctask-install-" });
    try {
      const clean = { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: home };
      const r = await run("sh", [`${ROOT}install.sh`], { env: clean, clearEnv: true });
      assert.equal(r.code, 1);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /^asynctask install: this install\.sh does not know where the releases are/);
      assert.match(r.stderr, /ASYNCTASK_REPO=<owner>\/<name> sh install\.sh/);
      assert.match(r.stderr, /ASYNCTASK_DOWNLOAD_URL=<url> sh install\.sh/);
      const bad = await run("sh", [`${ROOT}install.sh`], { env: { ...clean, ASYNCTASK_REPO: "nope" }, clearEnv: true });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /ASYNCTASK_REPO must name a GitHub repository as <owner>\/<name>, not "nope"/);
      for (const repo of ["https://github.com/a/b", "a/b/c", "/a/b", "a/"]) {
        const r = await run("sh", [`${ROOT}install.sh`], { env: { ...clean, ASYNCTASK_REPO: repo }, clearEnv: true });
        assert.equal(r.code, 1, repo);
        assert.match(r.stderr, /ASYNCTASK_REPO must name a GitHub repository as <owner>\/<name>/, repo);
      }
      assert.ok(!(await exists(`${home}/.local/bin/asynctask`)), "nothing installed");
      // The release workflow writes its repository into the copy it publishes (the same sed).
      const script = await Deno.readTextFile(`${ROOT}install.sh`);
      const workflow = await Deno.readTextFile(`${ROOT}.github/workflows/release.yml`);
      assert.match(
        workflow,
        /sed "s\|\^ASYNCTASK_REPO_DEFAULT=\.\*\|ASYNCTASK_REPO_DEFAULT=\\"\$GITHUB_REPOSITORY\\"\|" install\.sh/,
      );
      assert.match(script, /^ASYNCTASK_REPO_DEFAULT=""$/m);
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  },
});

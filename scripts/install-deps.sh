#!/usr/bin/env bash
# Installs the Debian packages moeserve builds and tests with, when any is missing.
# Idempotent; needs root (or sudo) only when something has to be installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libpcre2-dev libutf8proc-dev libopenblas-dev libboost-dev libcurl4-openssl-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # gloo (the CPU collectives PyTorch uses): comm/gloo, CPU ranks in separate processes.
  libgloo-dev
  # ZeroMQ (as vLLM): the control plane of --distributed-executor-backend mp (runtime/mp/).
  libzmq3-dev cppzmq-dev
  # The live page's browser test drives Debian's chromium headless (puppeteer-core).
  chromium
  # The King James Bible (the `bible` program and its text): scripts/kjv-revelation.sh extracts
  # the demo model's held-out book from it for `moeserve perplexity` (and its test).
  bible-kjv bible-kjv-text
)
# Node.js + npm bundle the live page (esbuild) and run the test-only clients (the OpenAI SDK,
# puppeteer-core); any Node >= 18 will do (Debian 12 has 18).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then packages+=(nodejs npm); fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

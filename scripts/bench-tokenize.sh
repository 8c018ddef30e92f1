#!/usr/bin/env bash
# Tokenizer speed benchmark (issue 3): encode throughput of the Qwen3 tokenizer on 4 MB of
# deterministic mixed text, one thread, `moeserve bench tokenize`; writes
# bench/results/cpu-qwen3-tokenize.json (mb_per_s, tokens_per_s, bytes, machine, command).
# The peers, on the same text in the same run: Hugging Face's Tokenizers.js (npm
# @huggingface/tokenizers, pure JavaScript) when node and npm are available, and HF `tokenizers`
# (Rust; bench/hf_tokenizers_peer.py) when Python can import it — not on the CPU machine (no
# PyPI, no Debian package), but on the device machine, which has it with transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/moeserve}
DIR=tests/fixtures/tokenizers/qwen3
MB=${MB:-4}
ITERS=${ITERS:-3}
OUT=bench/results/cpu-qwen3-tokenize.json
PEER=@huggingface/tokenizers@0.2.0
CACHE=.cache/bench-tokenize
scripts/fetch-fixtures.sh
mkdir -p "$CACHE" bench/results
"$BIN" bench tokenize "$DIR" --mb "$MB" --iters "$ITERS" --write-text "$CACHE/text.bin" --result-file "$OUT"
if command -v node >/dev/null && command -v npm >/dev/null; then
  if [ ! -f "$CACHE/package/package.json" ]; then
    npm pack --loglevel=error --pack-destination "$CACHE" "$PEER" >/dev/null
    tar -xzf "$CACHE"/huggingface-tokenizers-0.2.0.tgz -C "$CACHE"
  fi
  node bench/tokenize_peer.mjs "$CACHE/package" "$DIR" "$CACHE/text.bin" "$OUT" "$ITERS"
else
  echo "bench-tokenize: node/npm not installed; no peer measured" >&2
fi
if python3 -c "import tokenizers" 2>/dev/null; then
  python3 bench/hf_tokenizers_peer.py "$DIR" "$CACHE/text.bin" "$OUT" "$ITERS"
else
  echo "bench-tokenize: Python package tokenizers (Rust) not importable; no Rust peer measured" >&2
fi
echo "wrote $OUT"

#!/usr/bin/env bash
# Sampled against greedy decode on the CPU (issue 24: sampled within 1.2x of greedy): for each
# moeserve binary given, `moeserve serve` on the bundled KJV model, then ROUNDS pairs of
# `moeserve bench serve` runs, greedy and sampled (temperature 1, top-p 0.95) in turn, each
# writing its summary to OUT_DIR/<label>-<mode>-<round>.json and the server's CPU seconds during the
# run (user + system, from /proc/PID/stat) to OUT_DIR/<label>-<mode>-<round>.cpu: on a shared
# machine the CPU time per token varies less than the wall-clock throughput.
#   scripts/bench-sampling-overhead.sh OUT_DIR LABEL=BINARY [LABEL=BINARY...]
# Environment: ROUNDS (5), PORT (18431), THREADS (2).
set -euo pipefail
out_dir=$1
shift
rounds=${ROUNDS:-5}
port=${PORT:-18431}
threads=${THREADS:-2}
model=models/kjv-mixtral-tiny
mkdir -p "$out_dir"
common=(--model "$model" --port "$port" --max-concurrency 32 --random-input-len 128 --random-output-len 64
        --ignore-eos --seed 1 --disable-tqdm)
load=("${common[@]}" --num-prompts 128)
# The server's user + system CPU time in seconds.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
# One bench serve run against the server $1, named $2, with the remaining arguments.
run() {
  local server=$1 name=$2 start
  shift 2
  start=$(cpu_seconds "$server")
  "$binary" bench serve "${load[@]}" "$@" --result-file "$out_dir/$name.json" >/dev/null
  echo "$(cpu_seconds "$server") - $start" | bc >"$out_dir/$name.cpu"
}
for spec in "$@"; do
  label=${spec%%=*}
  binary=${spec#*=}
  "$binary" serve "$model" --host 127.0.0.1 --port "$port" --threads "$threads" --disable-log-requests \
    >"$out_dir/$label-server.log" 2>&1 &
  server=$!
  until grep -q "serving .* on http://" "$out_dir/$label-server.log"; do sleep 0.2; done
  "$binary" bench serve "${common[@]}" --num-prompts 32 >/dev/null  # warm-up
  for round in $(seq 1 "$rounds"); do
    run "$server" "$label-greedy-$round"
    run "$server" "$label-sampled-$round" --temperature 1 --top-p 0.95
  done
  kill "$server"
  wait "$server" || true
done

#!/usr/bin/env bash
# CPU serving benchmark of the bundled demo model (issue 4): `moeserve serve` on loopback driven by
# `moeserve bench serve` at concurrency 1, 8 and 32 (random 128-token prompts, 64 generated
# tokens each, all requests queued at once), plus the offline `bench throughput` of the same
# engine. Writes bench/results/cpu-kjv-serve.json with every run's summary and this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/moeserve}
MODEL=models/kjv-mixtral-tiny
OUT=bench/results/cpu-kjv-serve.json
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN" serve "$MODEL" --host 127.0.0.1 --port 0 --disable-log-requests >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 600); do
  PORT=$(grep -oE 'serving .* on http://127.0.0.1:[0-9]+' "$WORK/server.log" | grep -oE '[0-9]+$' || true)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { cat "$WORK/server.log"; exit 1; }

runs=()
for concurrency in 1 8 32; do
  prompts=$((concurrency * 4))
  [ "$prompts" -lt 16 ] && prompts=16
  "$BIN" bench serve --model "$MODEL" --base-url "http://127.0.0.1:$PORT" --num-prompts "$prompts" \
    --max-concurrency "$concurrency" --random-input-len 128 --random-output-len 64 --ignore-eos \
    --disable-tqdm --result-file "$WORK/c$concurrency.json"
  runs+=("$WORK/c$concurrency.json")
done
kill -TERM $SERVER; wait $SERVER || true

"$BIN" bench throughput "$MODEL" --input-len 128 --output-len 64 --num-prompts 64 \
  --output-json "$WORK/throughput.json"

python3 - "$OUT" "$WORK/throughput.json" "${runs[@]}" <<'PY'
import json, os, platform, subprocess, sys
out, throughput, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
result = {
    "benchmark": "moeserve bench serve against moeserve serve (CPU backend, bundled kjv-mixtral-tiny)",
    "command": "scripts/bench-serve-cpu.sh",
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(),
                # other work on the machine skews the figures: the 1/5/15-minute load at the end
                "load_average": os.getloadavg()},
    "workload": "random token-id prompts of 128 tokens, 64 generated tokens each (ignore_eos), all queued at once",
    "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "serve": [json.load(open(path)) for path in runs],
    "throughput_offline": json.load(open(throughput)),
}
json.dump(result, open(out, "w"), indent=2)
for run in result["serve"]:
    print(f"concurrency {run['max_concurrency']:>3}: {run['output_throughput']:8.1f} output tok/s, "
          f"TTFT median {run['median_ttft_ms']:7.1f} ms, TPOT median {run['median_tpot_ms']:6.1f} ms, failed {run['failed']}")
PY

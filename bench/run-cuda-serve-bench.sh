#!/usr/bin/env bash
# GPU serving benchmark (issue 7): `moeserve serve --device cuda` of the Mixtral-8x7B shape cut to
# LAYERS (8) layers with dummy bf16 weights (the bundled demo model's tokenizer), timed from launch
# to the HTTP port opening and from there to the first answer, then driven by `moeserve bench
# serve` at concurrency 1, 8 and 64 (random 128-token prompts, 64 generated tokens, ignore_eos),
# greedy, then at 8 and 64 sampling with temperature 1 and top_p 0.95; last, the serving loop's
# overhead over a bare decode step (serving_overhead). Every run draws its own prompts (--seed),
# so none hits the prefix cache another run filled.
# usage: bench/run-cuda-serve-bench.sh MOESERVE_BINARY OUT.json [LAYERS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1
OUT=$2
LAYERS=${3:-8}
CONFIG=${CONFIG:-bench/configs/mixtral-8x7b-v0.1}  # CONFIG/DEVICE overrides: a dry run elsewhere
DEVICE=${DEVICE:-cuda}
TOKENIZER=models/kjv-mixtral-tiny
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

now_ms() { date +%s%3N; }
start=$(now_ms)
"$BIN" serve "$CONFIG" --tokenizer "$TOKENIZER" --load-format dummy --hf-overrides "{\"num_hidden_layers\": $LAYERS}" \
  --device "$DEVICE" --host 127.0.0.1 --port 0 --served-model-name m --max-model-len 4096 --disable-log-requests \
  >"$WORK/server.log" 2>&1 &
SERVER=$!
PORT=
for _ in $(seq 1200); do
  PORT=$(grep -oE 'serving .* on http://127.0.0.1:[0-9]+' "$WORK/server.log" | grep -oE '[0-9]+$' || true)
  [ -n "$PORT" ] && break
  kill -0 $SERVER 2>/dev/null || break
  sleep 0.05
done
[ -n "$PORT" ] || { cat "$WORK/server.log"; exit 1; }
port_ms=$(($(now_ms) - start))
first_ms=$(python3 - "$PORT" <<'PY'
import json, sys, time, urllib.request
body = json.dumps({"model": "m", "prompt": "In the beginning", "max_tokens": 16, "temperature": 0}).encode()
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/completions", body,
                                 {"Content-Type": "application/json"})
start = time.perf_counter()
answer = json.load(urllib.request.urlopen(request, timeout=60))
assert answer["choices"][0]["text"], answer
print(round((time.perf_counter() - start) * 1000, 1))
PY
)
runs=()
for concurrency in 1 8 64; do
  prompts=$((concurrency * 4))
  [ "$prompts" -lt 16 ] && prompts=16
  "$BIN" bench serve --model "$TOKENIZER" --base-url "http://127.0.0.1:$PORT" --served-model-name m \
    --num-prompts "$prompts" --max-concurrency "$concurrency" --random-input-len 128 --random-output-len 64 \
    --ignore-eos --disable-tqdm --seed "$concurrency" --result-file "$WORK/c$concurrency.json"
  runs+=("$WORK/c$concurrency.json")
done
# The same at concurrency 8 and 64 with sampling (temperature 1, top_p 0.95: tokens picked on the GPU).
for concurrency in 8 64; do
  "$BIN" bench serve --model "$TOKENIZER" --base-url "http://127.0.0.1:$PORT" --served-model-name m \
    --num-prompts $((concurrency * 4)) --max-concurrency "$concurrency" --random-input-len 128 --random-output-len 64 \
    --ignore-eos --disable-tqdm --seed $((1000 + concurrency)) --temperature 1.0 --top-p 0.95 \
    --result-file "$WORK/s$concurrency.json"
  runs+=("$WORK/s$concurrency.json")
done
# The serving loop's own cost: decode-dominated runs (16-token prompts, 256 tokens out, one wave)
# whose median TPOT is set against the engine's bare decode step (bench latency, same shape).
probes=()
for concurrency in 1 64; do
  "$BIN" bench serve --model "$TOKENIZER" --base-url "http://127.0.0.1:$PORT" --served-model-name m \
    --num-prompts "$concurrency" --max-concurrency "$concurrency" --random-input-len 16 --random-output-len 256 \
    --ignore-eos --disable-tqdm --seed $((2000 + concurrency)) --result-file "$WORK/p$concurrency.json"
  probes+=("$WORK/p$concurrency.json")
done
kill -TERM $SERVER; wait $SERVER || true
"$BIN" bench latency "$CONFIG" --device "$DEVICE" --load-format dummy --hf-overrides "{\"num_hidden_layers\": $LAYERS}" \
  --input-len 16 --output-len 256 --num-iters 2 --batch-size 1,64 --prefill-len 0 --output-json "$WORK/steps.json" \
  >/dev/null
python3 - "$OUT" "$port_ms" "$first_ms" "$WORK/server.log" "$WORK/steps.json" "${#probes[@]}" "${probes[@]}" \
  "${runs[@]}" <<'PY'
import json, subprocess, sys
out, port_ms, first_ms, log, steps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
num_probes = int(sys.argv[6])
probes, runs = sys.argv[7:7 + num_probes], sys.argv[7 + num_probes:]
bare = json.load(open(steps)).get("decode", {})  # per batch size on --device cuda only
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    gpu = None
result = {
    "benchmark": "moeserve serve --device cuda driven by moeserve bench serve on the same machine",
    "command": "bench/run-cuda-serve-bench.sh",
    "gpu": gpu,
    "model": "mistralai/Mixtral-8x7B-v0.1 config, num_hidden_layers=8, dummy bf16 weights (generated on the GPU)",
    "workload": "random 128-token prompts, 64 generated tokens each (ignore_eos), all queued at once; "
                "greedy at concurrency 1/8/64, then temperature 1.0 + top_p 0.95 at 8/64",
    "startup_to_port_open_ms": port_ms,
    "first_answer_after_port_ms": first_ms,
    "server_log_tail": open(log).read().splitlines()[-8:],
    "serve": [json.load(open(path)) for path in runs],
    "serving_overhead": [],
}
for path in probes:
    run = json.load(open(path))
    if str(run["max_concurrency"]) not in bare:
        continue
    step_ms = bare[str(run["max_concurrency"])]["decode_seconds"] / 256 * 1000
    result["serving_overhead"].append({
        "workload": "random 16-token prompts, 256 generated tokens each, one request per slot",
        "concurrency": run["max_concurrency"],
        "served_median_tpot_ms": run["median_tpot_ms"],
        "bench_latency_step_ms": step_ms,
        "overhead_fraction": run["median_tpot_ms"] / step_ms - 1,
    })
json.dump(result, open(out, "w"), indent=2)
print(f"port open after {port_ms} ms, first answer {first_ms} ms later")
for run in result["serve"]:
    print(f"concurrency {run['max_concurrency']:>3}, temperature {run['temperature']}: "
          f"{run['output_throughput']:8.1f} output tok/s, "
          f"TTFT median {run['median_ttft_ms']:7.1f} ms, TPOT median {run['median_tpot_ms']:6.1f} ms, failed {run['failed']}")
for probe in result["serving_overhead"]:
    print(f"concurrency {probe['concurrency']:>3}, 16 in / 256 out: served TPOT {probe['served_median_tpot_ms']:.2f} ms, "
          f"bare step {probe['bench_latency_step_ms']:.2f} ms ({100 * probe['overhead_fraction']:+.1f}%)")
PY

#!/usr/bin/env bash
# Issue 24's acceptance load, measured: `moeserve serve` (bundled model, --api-key) driven by
# `moeserve bench serve` with 512 random prompts at concurrency 256, once on its own and once while
# one more client (curl) sends ~30 MB bodies back to back: an authenticated completion whose
# prompt is far over the context (400 context_length_exceeded), a /tokenize (open without the
# key, as in vLLM: 200, every token) and an unauthenticated completion (401 from the headers). A
# first load warms the server up. Writes
# bench/results/cpu-kjv-serve-big-body-{without,with}.json (bench serve's result file plus the
# machine, the large client's answers and the p99 ratio) and prints the small requests' p99s.
# ORDER=with-first runs the loaded run first (to see whether the order matters).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/moeserve}
MODEL=models/kjv-mixtral-tiny
KEY=bench-key
ORDER=${ORDER:-without-first}
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; [ -n "${BIG:-}" ] && kill $BIG 2>/dev/null; rm -rf "$WORK"' EXIT

"$BIN" serve "$MODEL" --host 127.0.0.1 --port 0 --threads 2 --kv-cache-memory 256MiB --api-key "$KEY" \
  --disable-log-requests >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 600); do
  PORT=$(grep -oE 'serving .* on http://127.0.0.1:[0-9]+' "$WORK/server.log" | grep -oE '[0-9]+$' || true)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { cat "$WORK/server.log"; exit 1; }
URL="http://127.0.0.1:$PORT"

python3 - "$WORK" <<'PY'
import json, sys
verse = "In the beginning God created the heaven and the earth. "
prompt = verse * (30_000_000 // len(verse))
json.dump({"prompt": prompt, "max_tokens": 1}, open(sys.argv[1] + "/completion.json", "w"))
json.dump({"prompt": prompt}, open(sys.argv[1] + "/tokenize.json", "w"))
PY

load() {
  OPENAI_API_KEY=$KEY "$BIN" bench serve --model "$MODEL" --base-url "$URL" --num-prompts 512 \
    --max-concurrency 256 --random-input-len 24 --random-output-len 12 --random-range-ratio 0.5 --ignore-eos \
    --disable-tqdm --result-file "$1" >"$1.log" 2>&1
}
# The large client: one request at a time, each kind in turn, until $WORK/stop exists (it then
# finishes the round); every answer's status (000: none) with the kind and its seconds.
big_client() {
  while [ ! -e "$WORK/stop" ]; do
    for kind in "completion.json /v1/completions auth" "tokenize.json /tokenize noauth" \
                "completion.json /v1/completions noauth"; do
      set -- $kind
      auth=()
      [ "$3" = auth ] && auth=(-H "Authorization: Bearer $KEY")
      curl -s -o /dev/null -w "$2 $3 %{http_code} %{time_total}\n" --max-time 300 -H 'Expect:' \
        -H 'Content-Type: application/json' "${auth[@]}" --data-binary "@$WORK/$1" "$URL$2" || true
    done
  done
}

load "$WORK/warmup.json"
run_without() { load "$WORK/without.json"; }
run_with() {
  rm -f "$WORK/stop"
  big_client >"$WORK/big.log" 2>&1 &
  BIG=$!
  sleep 1
  load "$WORK/with.json"
  touch "$WORK/stop"
  wait $BIG
  BIG=
}
if [ "$ORDER" = with-first ]; then run_with; run_without; else run_without; run_with; fi
kill -TERM $SERVER; wait $SERVER || true

python3 - "$WORK" bench/results "$ORDER" <<'PY'
import collections, json, os, platform, subprocess, sys
work, out, order = sys.argv[1], sys.argv[2], sys.argv[3]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
machine = {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(), "load_average": os.getloadavg()}
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
runs = {name: json.load(open(f"{work}/{name}.json")) for name in ("without", "with")}
answers = collections.defaultdict(list)  # "PATH AUTH -> STATUS": each answer's seconds
for line in open(f"{work}/big.log"):
    path, auth, status, seconds = line.split()
    answers[f"{path} {auth} -> {status}"].append(round(float(seconds), 2))
ratio = {k: runs["with"][k] / runs["without"][k] for k in ("p99_e2el_ms", "p99_ttft_ms", "p99_itl_ms")}
for name, run in runs.items():
    run["machine"] = machine
    run["git_commit"] = commit
    run["command"] = "scripts/bench-serve-big-body.sh" + (" (ORDER=with-first)" if order == "with-first" else "")
    run["big_body_client"] = (dict(answers) if name == "with" else "none")
    run["p99_ratio_with_over_without"] = ratio
    json.dump(run, open(f"{out}/cpu-kjv-serve-big-body-{name}.json", "w"), indent=2, sort_keys=True)
    print(f"{name:>7}: completed {run['completed']}, failed {run['failed']}, p99 e2el {run['p99_e2el_ms']:.0f} ms, "
          f"p99 ttft {run['p99_ttft_ms']:.0f} ms, p99 itl {run['p99_itl_ms']:.0f} ms")
print("large client:", dict(answers))
print("p99 ratio with/without:", {k: round(v, 2) for k, v in ratio.items()})
PY

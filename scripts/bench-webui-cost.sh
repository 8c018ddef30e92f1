#!/usr/bin/env bash
# What the live page's push (GET /live, one event a second) costs the engine (issue 25): decode
# throughput of `moeserve bench serve` at concurrency 64 against `moeserve serve` (CPU backend,
# bundled kjv-mixtral-tiny) in three settings, alternated ROUNDS times back to back so that
# other load on the machine falls on all three alike: no page connected; an SSE client (curl)
# reading /live; and a second server started with --no-webui (no live counters at all). On a
# shared machine wall-clock throughput swings with the other load by more than the push could
# cost, so each run also records the server's CPU time per generated token (/proc/PID/stat: all
# its threads; the pools block, never spin), and the server's own count of the time its ticks
# took (moeserve:live_push_seconds_total). Writes bench/results/cpu-kjv-webui-push-cost.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/moeserve}
MODEL=models/kjv-mixtral-tiny
OUT=${OUT:-bench/results/cpu-kjv-webui-push-cost.json}
ROUNDS=${ROUNDS:-8}
PROMPTS=${PROMPTS:-192}
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_server() {  # name, extra serve flags...: sets PORT_<name>
  local name=$1 port=
  shift
  "$BIN" serve "$MODEL" --host 127.0.0.1 --port 0 --disable-log-requests "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 600); do
    port=$(grep -oE 'serving .* on http://127.0.0.1:[0-9]+' "$WORK/$name.log" | grep -oE '[0-9]+$' || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$WORK/$name.log"; exit 1; }
  printf -v "PORT_$name" '%s' "$port"
  printf -v "PID_$name" '%s' "${PIDS[-1]}"
}
cpu_ticks() {  # pid: user + system clock ticks of every thread so far
  awk '{print $14 + $15}' "/proc/$1/stat"
}

bench() {  # port, result name, server pid
  local before
  before=$(cpu_ticks "$3")
  "$BIN" bench serve --model "$MODEL" --base-url "http://127.0.0.1:$1" --num-prompts "$PROMPTS" \
    --max-concurrency 64 --random-input-len 128 --random-output-len 64 --ignore-eos --seed 0 \
    --disable-tqdm --result-file "$WORK/$2.json" >/dev/null
  echo $(($(cpu_ticks "$3") - before)) >"$WORK/$2.cpu"
}
push_seconds() {
  curl -s "http://127.0.0.1:$PORT_on/metrics" | awk '/^moeserve:live_push_seconds_total/ {print $2}'
}

start_server on
start_server off --no-webui
bench "$PORT_on" warmup-on "$PID_on"
bench "$PORT_off" warmup-off "$PID_off"
for round in $(seq "$ROUNDS"); do
  bench "$PORT_on" "none-$round" "$PID_on"
  curl -sN "http://127.0.0.1:$PORT_on/live" >"$WORK/live-$round.txt" &
  client=$!
  sleep 1.5  # the hello and a first tick
  before=$(push_seconds)
  bench "$PORT_on" "page-$round" "$PID_on"
  after=$(push_seconds)
  kill "$client"; wait "$client" 2>/dev/null || true
  echo "$before $after" >"$WORK/push-$round.txt"
  bench "$PORT_off" "off-$round" "$PID_off"
done

python3 - "$OUT" "$WORK" "$ROUNDS" "$PROMPTS" "$(getconf CLK_TCK)" <<'PY'
import json, os, platform, statistics, subprocess, sys
out, work, rounds, prompts, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
def load(name):
    run = json.load(open(f"{work}/{name}.json"))
    # The server's CPU time (all threads) per generated token, in ms.
    run["server_cpu_ms_per_output_token"] = 1000 * int(open(f"{work}/{name}.cpu").read()) / hz / run["total_output_tokens"]
    return run
runs = {kind: [load(f"{kind}-{r}") for r in range(1, rounds + 1)] for kind in ("none", "page", "off")}
ticks = [open(f"{work}/live-{r}.txt").read().count('"type":"tick"') for r in range(1, rounds + 1)]
push = []
for r in range(1, rounds + 1):
    before, after = map(float, open(f"{work}/push-{r}.txt").read().split())
    push.append((after - before) / runs["page"][r - 1]["duration"])
median = {kind: statistics.median(run["output_throughput"] for run in runs[kind]) for kind in runs}
cpu_ms = {kind: statistics.median(run["server_cpu_ms_per_output_token"] for run in runs[kind]) for kind in runs}
# Paired: each round's page run against the no-client run just before it.
paired = [1 - p["output_throughput"] / n["output_throughput"] for n, p in zip(runs["none"], runs["page"])]
cpu_paired = [p["server_cpu_ms_per_output_token"] / n["server_cpu_ms_per_output_token"] - 1
              for n, p in zip(runs["none"], runs["page"])]
result = {
    "benchmark": "live page push cost: moeserve bench serve at concurrency 64 with and without a /live client",
    "command": "scripts/bench-webui-cost.sh",
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(),
                # other work on the machine skews the figures: the 1/5/15-minute load at the end
                "load_average": os.getloadavg()},
    "workload": f"{prompts} random 128-token prompts, 64 generated tokens each (ignore_eos), at most 64 in flight; "
                "each round: no client, one SSE client (curl reading /live), then a --no-webui server",
    "git_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "median_output_throughput": median,
    "throughput_cost_median": 1 - median["page"] / median["none"],
    "throughput_cost_paired": paired,
    "throughput_cost_paired_median": statistics.median(paired),
    "median_server_cpu_ms_per_output_token": cpu_ms,
    # The client's cost in server CPU time per token (how much less decode the same CPUs give).
    "cpu_cost_median": cpu_ms["page"] / cpu_ms["none"] - 1,
    "cpu_cost_paired": cpu_paired,
    "cpu_cost_paired_median": statistics.median(cpu_paired),
    # The server's own measure: seconds its io thread spent in ticks per second of the run.
    "push_seconds_per_second": push,
    "live_ticks_received_per_round": ticks,
    "runs": runs,
}
json.dump(result, open(out, "w"), indent=2)
for kind, label in (("none", "no page client"), ("page", "SSE client on /live"), ("off", "--no-webui server")):
    print(f"{label:>20}: " + ", ".join(f"{run['output_throughput']:.0f}" for run in runs[kind])
          + f" output tok/s (median {median[kind]:.1f}); server CPU per token "
          + ", ".join(f"{run['server_cpu_ms_per_output_token']:.3f}" for run in runs[kind]) + f" ms (median {cpu_ms[kind]:.4f})")
print(f"throughput cost of the client: median {100 * result['throughput_cost_median']:+.2f}%, paired per round "
      + ", ".join(f"{100 * c:+.2f}%" for c in paired) + f" (median {100 * result['throughput_cost_paired_median']:+.2f}%)")
print(f"CPU cost of the client: median {100 * result['cpu_cost_median']:+.2f}%, paired per round "
      + ", ".join(f"{100 * c:+.2f}%" for c in cpu_paired) + f" (median {100 * result['cpu_cost_paired_median']:+.2f}%)")
print("io thread time in ticks per second of run: " + ", ".join(f"{1e6 * p:.0f} us/s" for p in push)
      + f"; ticks received per round: {ticks}")
PY

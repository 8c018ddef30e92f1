#!/usr/bin/env bash
# CPU benchmark of the bundled demo model (issue 2): prefill and decode tokens/s on this
# machine, against its measured copy bandwidth. Writes bench/results/cpu-kjv-latency.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/moeserve}
mkdir -p bench/results
"$BIN" bench latency models/kjv-mixtral-tiny --input-len 128 --output-len 64 --num-iters 5 \
  --output-json bench/results/cpu-kjv-latency.json

#!/usr/bin/env bash
# Issue 21's FP8 measurement in one run on one GPU: bf16 against --quantization fp8 on the same
# shape (moeserve bench latency: decode at batch 1/8/16/32/64, prefill 8×1024, the prefill GEMMs each way
# in "prefill_gemms"), then the trained KJV model's Revelation perplexity with each FP8 option,
# merged into one JSON with the ratios the issue asks for.
# usage: bench/run-cuda-fp8-ab.sh MOESERVE_BINARY OUT.json [LAYERS] [REVELATION.txt]
# The shape: mistralai/Mixtral-8x7B-v0.1's config.json (bench/configs/), cut to LAYERS (8) layers,
# random weights (--load-format dummy). REVELATION.txt: scripts/kjv-revelation.sh's output (the
# perplexities are skipped without it).
set -euo pipefail
moeserve=$1
out=$2
layers=${3:-8}
revelation=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
config=$here/configs/mixtral-8x7b-v0.1
kjv=$here/../models/kjv-mixtral-tiny
tmp=$(mktemp -d)
for weights in bf16 fp8; do
  quantization=()
  [ "$weights" = fp8 ] && quantization=(--quantization fp8)
  "$moeserve" bench latency "$config" --device cuda --load-format dummy \
    --hf-overrides "{\"num_hidden_layers\": $layers}" --input-len 128 --output-len 32 --num-iters 1 \
    --batch-size 1,8,16,32,64 --prefill-batch 8 --prefill-len 1024 "${quantization[@]}" \
    --output-json "$tmp/latency-$weights.json" >/dev/null
done
if [ -n "$revelation" ]; then
  for option in bf16 q-fp8 kv-fp8 both; do
    flags=()
    case $option in
      q-fp8) flags=(--quantization fp8) ;;
      kv-fp8) flags=(--kv-cache-dtype fp8) ;;
      both) flags=(--quantization fp8 --kv-cache-dtype fp8) ;;
    esac
    "$moeserve" perplexity "$kjv" --device cuda --file "$revelation" --ctx-size 256 "${flags[@]}" \
      --json "$tmp/ppl-$option.json" >/dev/null
  done
fi
python3 - "$tmp" "$out" "$layers" <<'PY'
import glob, json, os, sys
tmp, out, layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
bf16 = json.load(open(f"{tmp}/latency-bf16.json"))
fp8 = json.load(open(f"{tmp}/latency-fp8.json"))
keys = tuple(f"decode_bs{b}_tok_s" for b in (1, 8, 16, 32, 64)) + ("prefill_tok_s", "prefill_tflops")
result = {
    "shape": f"mistralai/Mixtral-8x7B-v0.1 config, num_hidden_layers={layers}, dummy weights",
    "gpu": bf16.get("gpu"),
    "command": "bench/run-cuda-fp8-ab.sh",
    "summary": {k: {"bf16": bf16[k], "fp8": fp8[k], "fp8_over_bf16": fp8[k] / bf16[k]} for k in keys},
    "decode_bs1_roofline_fraction": {"bf16": bf16["decode_bs1_roofline_fraction"],
                                     "fp8": fp8["decode_bs1_roofline_fraction"]},
    "prefill_gemms": fp8.get("prefill_gemms", []),
    "runs": {"bf16": bf16, "fp8": fp8},
}
perplexity = {}
for path in sorted(glob.glob(f"{tmp}/ppl-*.json")):
    run = json.load(open(path))
    run["file"] = os.path.basename(run.get("file", ""))  # no path of the machine in the result
    run["model"] = "models/kjv-mixtral-tiny"
    perplexity[os.path.basename(path)[4:-5]] = run
if perplexity:
    result["kjv_revelation_perplexity"] = perplexity
json.dump(result, open(out, "w"), indent=1)
for k, v in result["summary"].items():
    print(f"{k}: bf16 {v['bf16']:.1f}, fp8 {v['fp8']:.1f} ({v['fp8_over_bf16']:.2f}x)")
PY
rm -rf "$tmp"

#!/usr/bin/env bash
# The GPU benchmark of issue 7, both engines in one run on one machine:
#   moeserve bench latency --device cuda (decode at batch 1/8/32/64, prefill 8×1024, the GPU's
#   copy bandwidth and bf16 GEMM rate, per-kernel GB/s) and Hugging Face transformers on the same
#   shape (bench/hf_transformers_bench.py), merged into one JSON.
# usage: bench/run-cuda-bench.sh MOESERVE_BINARY OUT.json [LAYERS]
# The shape: mistralai/Mixtral-8x7B-v0.1's config.json (bench/configs/), cut to LAYERS (8) layers,
# bf16 random weights (--load-format dummy), 128-token prompts, 64 generated tokens per sequence.
set -euo pipefail
moeserve=$1
out=$2
layers=${3:-8}
here=$(cd "$(dirname "$0")" && pwd)
config=$here/configs/mixtral-8x7b-v0.1
tmp=$(mktemp -d)
# Twice: the default split-bf16 activations (float32-like results), then plain bf16 activations
# (what transformers and vLLM run in bf16), reported under "bf16_activations".
for precision in split-bf16 bf16; do
  "$moeserve" bench latency "$config" --device cuda --load-format dummy \
    --hf-overrides "{\"num_hidden_layers\": $layers}" --input-len 128 --output-len 64 --num-iters 2 \
    --batch-size 1,8,32,64 --prefill-batch 8 --prefill-len 1024 --prefill-precision "$precision" \
    --output-json "$tmp/moeserve-$precision.json" >/dev/null
done
PYTHONUNBUFFERED=1 python3 "$here/hf_transformers_bench.py" "$config" "$tmp/hf.json" --layers "$layers" \
  --batch-sizes 1,8,32,64 --input-len 128 --output-len 64 --prefill-batch 8 --prefill-len 1024
python3 - "$tmp/moeserve-split-bf16.json" "$tmp/hf.json" "$out" "$layers" "$tmp/moeserve-bf16.json" <<'PY'
import json, sys
ours, hf, out, layers = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4])
plain = json.load(open(sys.argv[5]))
headline = ("decode_bs1_tok_s", "decode_bs8_tok_s", "decode_bs32_tok_s", "decode_bs64_tok_s",
            "decode_bs1_roofline_fraction", "prefill_tok_s", "prefill_tflops", "prefill_fraction_of_gemm_rate")
result = {
    "shape": f"mistralai/Mixtral-8x7B-v0.1 config, num_hidden_layers={layers}, bf16, dummy weights",
    "gpu": ours.get("gpu"),
    "command": "bench/run-cuda-bench.sh",
    **{k: ours[k] for k in ("decode_bs1_tok_s", "decode_bs8_tok_s", "decode_bs32_tok_s", "decode_bs64_tok_s",
                            "decode_bs1_roofline_tok_s", "decode_bs1_roofline_fraction", "prefill_tok_s",
                            "prefill_tflops", "prefill_fraction_of_gemm_rate", "copy_bandwidth_bytes_per_s",
                            "gemm_bf16_tflops", "weight_bytes_per_decode_token") if k in ours},
    "transformers": {k: hf[k] for k in hf if k.startswith(("decode_bs", "prefill", "transformers_version",
                                                             "torch_version", "attn_implementation",
                                                             "copy_bandwidth", "gemm_bf16"))},
    "activations": ours.get("prefill_precision"),
    "bf16_activations": {k: plain[k] for k in headline + ("prefill_precision",) if k in plain},
    "moeserve_full": ours,
    "moeserve_bf16_full": plain,
}
for b in (1, 8, 32, 64):
    k = f"decode_bs{b}_tok_s"
    if k in ours and k in hf:
        result[f"speedup_vs_transformers_bs{b}"] = ours[k] / hf[k]
json.dump(result, open(out, "w"), indent=2)
print(json.dumps({k: v for k, v in result.items() if not k.startswith("moeserve_")}, indent=2))
PY

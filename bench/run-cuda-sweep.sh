#!/usr/bin/env bash
# Every MoE family of the `plan` catalog at its real shape on one GPU (issue 20), in one run and
# one result file: `moeserve bench latency --device cuda --load-format dummy --dtype bfloat16`
# (bf16 weights and GEMM inputs, vLLM's numerics) per model, decode at batch 1/8/32/64/128/256
# and prefill 8×1024, each figure with its roofline fraction:
#   decode: tok/s ÷ (batch × copy bandwidth ÷ bytes the step touches: every non-expert weight, the
#           routed experts the step ran — counted, not assumed — and the KV cache at the run's
#           mean context);
#   prefill: TFLOP/s (MLA counted in its plain form) ÷ this GPU's cuBLAS bf16 rate.
# usage: bench/run-cuda-sweep.sh MOESERVE_BINARY OUT.json [GROUP]
#   GROUP: all (default), whole (the models that fit one H200 whole), cut (the large ones, cut
#   to the layers below) or new (gpt-oss-20b whole, its experts in MXFP4 as published, and
#   Llama-4-Scout cut to 10 of its 48 layers, which leaves an 80 GB H100 the KV cache of
#   batch 256). An OUT.json that exists
#   already keeps its other models, so the groups can run as separate commands (each under the
#   device's 10-minute limit) into one file.
set -euo pipefail
moeserve=$1
out=$2
group=${3:-all}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# id | layers (whole: empty) | extra flags
whole=(
  "mistralai/Mixtral-8x7B-v0.1||"
  "Qwen/Qwen3-30B-A3B||"
  "deepseek-ai/DeepSeek-V2-Lite||"
  "Qwen/Qwen2-57B-A14B||--max-num-batched-tokens 4096 --gpu-memory-utilization 0.95"
)
# Cut so the bf16 weights stay near 75 GB: DeepSeek-V3 keeps its 3 dense layers + 3 MoE layers,
# Kimi K2 its dense layer + 2 MoE layers.
cut=(
  "deepseek-ai/DeepSeek-V3|6|"
  "moonshotai/Kimi-K2-Instruct|3|"
  "Qwen/Qwen3-235B-A22B|16|"
  "mistralai/Mixtral-8x22B-v0.1|16|"
)
new=(
  "openai/gpt-oss-20b||"
  "meta-llama/Llama-4-Scout-17B-16E|10|"
)
case $group in
  whole) models=("${whole[@]}") ;;
  cut) models=("${cut[@]}") ;;
  new) models=("${new[@]}") ;;
  *) models=("${whole[@]}" "${cut[@]}" "${new[@]}") ;;
esac

results=()
for entry in "${models[@]}"; do
  IFS='|' read -r id layers extra <<<"$entry"
  name=${id//\//_}
  mkdir -p "$tmp/$name"
  "$moeserve" plan "$id" --print-config >"$tmp/$name/config.json"
  # bf16 weights (the fp8 catalog configs' quantization_config dropped), but GPT-OSS's experts in
  # MXFP4 as published
  quant=null
  [[ $id == openai/gpt-oss* ]] && quant='{"quant_method": "mxfp4"}'
  overrides="{\"quantization_config\": $quant}"
  [ -n "$layers" ] && overrides="{\"quantization_config\": $quant, \"num_hidden_layers\": $layers}"
  # shellcheck disable=SC2086
  "$moeserve" bench latency "$tmp/$name" --device cuda --load-format dummy --dtype bfloat16 \
    --hf-overrides "$overrides" --input-len 128 --output-len 32 --num-iters 1 \
    --batch-size 1,8,32,64,128,256 --prefill-batch 8 --prefill-len 1024 $extra \
    --output-json "$tmp/$name.json" >/dev/null 2>"$tmp/$name.log" || {
    echo "$id failed:" >&2
    tail -5 "$tmp/$name.log" >&2
  }
  echo "$id: $(grep -c 'tok/s decode' "$tmp/$name.log" || true) batch sizes" >&2
  results+=("$id|${layers:-whole}|$tmp/$name.json|$tmp/$name.log")
done

python3 - "$out" "${results[@]}" <<'PY'
import json, os, sys
out, entries = sys.argv[1], sys.argv[2:]
models = json.load(open(out))["models"] if os.path.exists(out) else {}
for entry in entries:
    model_id, layers, path, log = entry.split("|")
    if not os.path.exists(path):
        models[model_id] = {"layers": layers, "error": open(log).read()[-2000:]}
        continue
    r = json.load(open(path))
    summary = {
        "layers": layers,
        "weight_bytes": r["weight_bytes"],
        "decode_tok_s": {b: v["decode_tok_s"] for b, v in r["decode"].items()},
        "decode_roofline_fraction": {b: v["roofline_fraction"] for b, v in r["decode"].items()},
        "decode_routed_experts_per_moe_layer": {b: v["routed_experts_per_moe_layer"] for b, v in r["decode"].items()},
        "prefill_tok_s": r.get("prefill_tok_s"),
        "prefill_tflops": r.get("prefill_tflops"),
        "prefill_fraction_of_gemm_rate": r.get("prefill_fraction_of_gemm_rate"),
    }
    models[model_id] = {"summary": summary, "full": r}
first = next((m["full"] for m in models.values() if "full" in m), {})  # the machine's ceilings
result = {
    "command": "bench/run-cuda-sweep.sh",
    "gpu": first.get("gpu"),
    "copy_bandwidth_bytes_per_s": first.get("copy_bandwidth_bytes_per_s"),
    "gemm_bf16_tflops": first.get("gemm_bf16_tflops"),
    "settings": "--load-format dummy --dtype bfloat16, 128-token prompts, 32 tokens out, CUDA graphs, "
                "prefill 8x1024",
    "models": models,
}
json.dump(result, open(out, "w"), indent=1)
for model_id, m in models.items():
    if "summary" not in m:
        print(f"{model_id}: FAILED")
        continue
    s = m["summary"]
    fr = " ".join(f"{b}:{s['decode_tok_s'][b]:.0f}({s['decode_roofline_fraction'][b]:.2f})" for b in s["decode_tok_s"])
    print(f"{model_id} [{s['layers']}]: {fr} | prefill {s['prefill_tflops']:.0f} TFLOP/s "
          f"({s['prefill_fraction_of_gemm_rate']:.2f})")
PY

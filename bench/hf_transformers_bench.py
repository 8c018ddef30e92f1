#!/usr/bin/env python3
"""The peer half of bench/run-cuda-bench.sh: Hugging Face transformers (PyTorch eager, bf16,
random weights) on the same model shape and machine as `moeserve bench latency --device cuda`,
measured the same way — decode tok/s = generated tokens / decode time for B sequences of
INPUT_LEN prompt tokens decoding OUTPUT_LEN tokens each (greedy, KV cache), prefill of
PREFILL_BATCH x PREFILL_LEN tokens in one forward — plus the GPU's copy bandwidth and bf16
GEMM rate through PyTorch. Writes one JSON object.

usage: hf_transformers_bench.py CONFIG_DIR OUT.json [--layers 8] [--batch-sizes 1,8,32,64]
"""
import argparse
import json
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


@torch.no_grad()
def decode(model, vocab, batch, input_len, output_len):
    ids = torch.randint(0, vocab, (batch, input_len), device="cuda")
    prefill_s, out = timed(lambda: model(ids, use_cache=True, logits_to_keep=1))
    past = out.past_key_values
    token = out.logits[:, -1].argmax(-1, keepdim=True)

    def steps():
        nonlocal past, token
        for _ in range(output_len):
            o = model(token, past_key_values=past, use_cache=True, logits_to_keep=1)
            past = o.past_key_values
            token = o.logits[:, -1].argmax(-1, keepdim=True)

    decode_s, _ = timed(steps)
    return prefill_s, decode_s


def copy_bandwidth():
    a = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    best = 0.0
    for trial in range(6):
        s, _ = timed(lambda: b.copy_(a))
        if trial:
            best = max(best, 2 * a.numel() / s)
    return best


def gemm_tflops():
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    best = 0.0
    for trial in range(6):
        s, _ = timed(lambda: a @ b)
        if trial:
            best = max(best, 2 * n**3 / s / 1e12)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config_dir")
    parser.add_argument("out")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--prefill-batch", type=int, default=8)
    parser.add_argument("--prefill-len", type=int, default=1024)
    args = parser.parse_args()

    config = AutoConfig.from_pretrained(args.config_dir)
    config.num_hidden_layers = args.layers
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    start = time.perf_counter()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.eval()
    torch.cuda.synchronize()
    result = {
        "peer": "transformers",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "num_hidden_layers": args.layers,
        "parameters": sum(p.numel() for p in model.parameters()),
        "load_seconds": time.perf_counter() - start,
        "input_len": args.input_len,
        "output_len": args.output_len,
    }
    vocab = config.vocab_size
    decode(model, vocab, 1, 16, 4)  # warm-up
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        prefill_s, decode_s = decode(model, vocab, batch, args.input_len, args.output_len)
        result[f"decode_bs{batch}_tok_s"] = batch * args.output_len / decode_s
        result[f"decode_bs{batch}_seconds"] = decode_s
        print(f"transformers batch {batch}: {batch * args.output_len / decode_s:.1f} tok/s", flush=True)
    ids = torch.randint(0, vocab, (args.prefill_batch, args.prefill_len), device="cuda")
    with torch.no_grad():
        model(ids[:, :128], logits_to_keep=1)
        best = min(timed(lambda: model(ids, logits_to_keep=1))[0] for _ in range(3))
    tokens = args.prefill_batch * args.prefill_len
    result["prefill_seconds"] = best
    result["prefill_tok_s"] = tokens / best
    result["copy_bandwidth_bytes_per_s"] = copy_bandwidth()
    result["gemm_bf16_tflops"] = gemm_tflops()
    with open(args.out, "w") as out:
        json.dump(result, out, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""The Rust peer for `moeserve bench tokenize`: encodes the same NUL-separated documents (written
by `bench tokenize --write-text`) with Hugging Face `tokenizers` (Rust) on one thread (batch off,
RAYON_NUM_THREADS=1), best of N timed passes after a warm-up, and merges {mb_per_s, tokens_per_s,
...} into the moeserve result file as "peer_rust", noting whether its token count equals moeserve's.
Needs the `tokenizers` Python package (the device machine has it with transformers; PyPI is not
reachable from the CPU machine). Usage:
  python3 bench/hf_tokenizers_peer.py TOKENIZER_DIR TEXT_FILE RESULT_FILE [ITERS]
"""
import json
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import tokenizers  # noqa: E402

tokenizer_dir, text_file, result_file = sys.argv[1:4]
iters = int(sys.argv[4]) if len(sys.argv) > 4 else 3
tokenizer = tokenizers.Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
raw = open(text_file, "rb").read()
documents = [doc for doc in raw.decode("utf-8").split("\0") if doc]
best, tokens = float("inf"), 0
for it in range(iters + 1):  # iteration 0 warms up
    start = time.perf_counter()
    count = sum(len(tokenizer.encode(doc, add_special_tokens=False).ids) for doc in documents)
    seconds = time.perf_counter() - start
    if it > 0:
        best = min(best, seconds)
    tokens = count
size = len(raw) - len(documents)  # minus the NUL separators
result = json.load(open(result_file))
result["peer_rust"] = {
    "implementation": f"tokenizers {tokenizers.__version__} (Rust, Python binding), one thread",
    "bytes": size,
    "tokens": tokens,
    "same_token_count": tokens == result.get("tokens"),
    "seconds": best,
    "mb_per_s": size / best / 1e6,
    "tokens_per_s": tokens / best,
}
json.dump(result, open(result_file, "w"), indent=2)
print(json.dumps(result["peer_rust"], indent=2))

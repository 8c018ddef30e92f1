#include "runtime/sequence_runner.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace moeserve {

static int blocks_for(int tokens) { return (tokens + SequenceRunner::kBlockSize - 1) / SequenceRunner::kBlockSize; }

SequenceRunner::SequenceRunner(const DecoderModel& model, ExecContext& exec, int max_tokens)
    : model_(model),
      exec_(exec),
      kv_(KvShape{.num_layers = model.config().num_layers,
                  .num_blocks = std::max(1, blocks_for(max_tokens)),
                  .block_size = kBlockSize,
                  .entry_size = model.kv_entry_size()}),
      block_table_(std::max(1, blocks_for(max_tokens))),
      capacity_(max_tokens) {
  // Blocks in reverse order, so a kernel that ignored the block table would read garbage.
  std::iota(block_table_.rbegin(), block_table_.rend(), 0);
}

Result<Tensor> SequenceRunner::append(std::span<const int32_t> ids, bool all_logits, int max_chunk) {
  const int count = static_cast<int>(ids.size());
  if (count == 0) return make_error("no tokens to run");
  if (length_ + count > capacity_) {
    return make_error("sequence of {} tokens exceeds the capacity of {}", length_ + count, capacity_);
  }
  const int vocab = model_.config().vocab_size;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) return make_error("token id {} is outside the vocabulary [0, {})", id, vocab);
  }
  Tensor logits(DType::kF32, Shape{all_logits ? count : 1, vocab});
  const int chunk = max_chunk > 0 ? max_chunk : count;
  for (int begin = 0; begin < count; begin += chunk) {
    const int num = std::min(chunk, count - begin);
    std::vector<int32_t> positions(num);
    std::iota(positions.begin(), positions.end(), length_);
    std::vector<int32_t> logit_rows;
    if (all_logits) {
      logit_rows.resize(num);
      std::iota(logit_rows.begin(), logit_rows.end(), 0);
    } else if (begin + num == count) {
      logit_rows.push_back(num - 1);
    }
    length_ += num;
    ForwardBatch batch{.token_ids = ids.subspan(begin, num),
                       .positions = positions,
                       .sequences = {SequenceView{0, num, length_, block_table_}},
                       .logit_rows = logit_rows};
    Tensor step_logits(DType::kF32, Shape{static_cast<int64_t>(logit_rows.size()), vocab});
    model_.forward(exec_, batch, kv_, step_logits.view());
    if (logit_rows.empty()) continue;
    float* dst = all_logits ? logits.f32() + static_cast<int64_t>(begin) * vocab : logits.f32();
    std::memcpy(dst, step_logits.f32(), step_logits.numel() * sizeof(float));
  }
  return logits;
}

}  // namespace moeserve

#include "runtime/sequence_runner.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "runtime/cpu_runner.h"

namespace moeserve {

SequenceRunner::SequenceRunner(const CpuModel& model, ExecContext& exec, int max_tokens)
    : vocab_(model.config().vocab_size), block_table_(std::max(1, blocks_for(max_tokens))), capacity_(max_tokens) {
  auto runner = ModelRunner::create(std::make_unique<CpuDevice>(model, exec),
                                    cpu_runner_options(static_cast<int>(block_table_.size()), kBlockSize));
  MS_CHECK_MSG(runner.ok(), runner.ok() ? "" : runner.error().message.c_str());
  own_runner_ = std::move(runner.value());
  runner_ = own_runner_.get();
  // Blocks in reverse order, so a kernel that ignored the block table would read wrong KV.
  std::iota(block_table_.rbegin(), block_table_.rend(), 0);
}

SequenceRunner::~SequenceRunner() = default;

SequenceRunner::SequenceRunner(Runner& runner, int max_tokens)
    : runner_(&runner),
      vocab_(runner.config().vocab_size),
      block_table_(std::max(1, blocks_for(max_tokens))),
      capacity_(max_tokens) {
  MS_CHECK(runner.block_size() == kBlockSize && runner.num_kv_blocks() >= static_cast<int>(block_table_.size()));
  std::iota(block_table_.rbegin(), block_table_.rend(), 0);
}

Result<Tensor> SequenceRunner::append(std::span<const int32_t> ids, bool all_logits, int max_chunk) {
  const int count = static_cast<int>(ids.size());
  if (count == 0) return make_error("no tokens to run");
  if (length_ + count > capacity_) {
    return make_error("sequence of {} tokens exceeds the capacity of {}", length_ + count, capacity_);
  }
  const int vocab = vocab_;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) return make_error("token id {} is outside the vocabulary [0, {})", id, vocab);
  }
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
  Tensor logits(DType::kF32, Shape{all_logits ? count : 1, vocab});
  const int chunk = max_chunk > 0 ? max_chunk : count;
  float* dst = logits.f32();
  for (int done = 0; done < count;) {
    const int num = std::min(chunk, count - done);
    const bool last = done + num == count;
    const RunnerSeq seq{.tokens = tokens_,
                        .num_computed = length_,
                        .num_new = num,
                        .samples = last,
                        .all_logits = all_logits,
                        .block_table = block_table_};
    const Tensor step = runner_->execute(std::span<const RunnerSeq>(&seq, 1));
    std::memcpy(dst, step.f32(), step.numel() * sizeof(float));
    dst += step.numel();
    length_ += num;
    done += num;
  }
  return logits;
}

void SequenceRunner::reset() {
  tokens_.clear();
  length_ = 0;
}

}  // namespace moeserve

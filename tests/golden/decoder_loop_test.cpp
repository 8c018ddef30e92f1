// The one decoder loop (model/decoder_loop.h) on the CPU step backend, against transformers: every
// fixture family's logits at every position within 1e-4 (as the golden tests hold the CPU
// decoder), its 16 greedy tokens identical, and a batch that mixes a prefill chunk, a whole
// prompt and decode rows of three sequences giving each sequence's reference logits — the packed
// step inputs (model/step_model.h, runtime/step_packing.h) with several pieces, and MLA's plain
// form for long pieces beside its absorbed form for short ones.
#include <gtest/gtest.h>

#include <thread>

#include "comm/local/local_communicator.h"
#include "model/decoder_loop.h"
#include "model/sharded_weights.h"
#include "model/parallel.h"
#include "model/weight_plan.h"
#include "reference_data.h"
#include "runtime/cpu_step_backend.h"
#include "runtime/loaded_model.h"
#include "runtime/step_packing.h"

namespace moeserve {
namespace {

using testing::Reference;

constexpr double kTolerance = 1e-4;
constexpr int kGreedyTokens = 16;
constexpr int kBlockSize = 16;
constexpr int kBlocksPerSequence = 12;  // 192 positions: every fixture prompt + its greedy tokens
constexpr int kMaxSequences = 5;

// One fixture model on the CPU backend: its weights packed for the loop, a paged KV cache with
// kBlocksPerSequence blocks per sequence slot (slot s owns the blocks from s · kBlocksPerSequence
// on, in reverse order, so that block order differs from position order).
class LoopModel {
 public:
  // tp: this model is TP rank tp.rank's part, and step() runs with `comm` (its TP group).
  explicit LoopModel(const std::string& name, const Partition& tp = {}, Communicator* comm = nullptr,
                     int threads = 2)
      : pool_(threads),
        reference_(testing::fixture_model(name) + "/reference.safetensors"),
        backend_(exec_, 256 << 20),
        comm_(comm) {
    auto loaded = load_model(testing::fixture_model(name), LoadOptions{});
    if (!loaded.ok()) throw std::runtime_error(loaded.error().message);
    loaded_ = std::move(loaded.value());
    const ModelConfig& config = loaded_.model->config();
    const WeightPlan plan = WeightPlan::build(config);
    std::vector<Tensor> copies;  // column blocks copied out of the checkpoint, until packed
    auto weights = load_model_weights(config, ShardedWeights(*loaded_.weights, plan, copies), tp, memory_);
    if (!weights.ok()) throw std::runtime_error(weights.error().message);
    weights_ = std::move(weights.value());
    loop_ = std::make_unique<DecoderLoop>(config, weights_, tp);
    kv_.block_size = kBlockSize;
    kv_.entry_size = kv_entry_size(config, tp);
    const size_t floats = size_t(kMaxSequences) * kBlocksPerSequence * kBlockSize * kv_.entry_size;
    for (int l = 0; l < config.num_layers; ++l) {
      cache_.emplace_back(floats, 0.0f);
      kv_.layers.push_back(cache_.back().data());
    }
    for (int s = 0; s < kMaxSequences; ++s) {
      for (int b = kBlocksPerSequence - 1; b >= 0; --b) tables_[s].push_back(s * kBlocksPerSequence + b);
    }
  }

  const Reference& reference() const { return reference_; }
  int vocab() const { return loaded_.model->config().vocab_size; }

  struct Piece {
    int sequence;                         // slot
    const std::vector<int32_t>* tokens;   // the sequence's tokens so far
    int begin;
    int count;
    bool logits_all;
  };
  // One step; logits [Σ logit rows, vocab] (every row of a logits_all piece, else its last).
  std::vector<float> step(const std::vector<Piece>& pieces) {
    std::vector<StepPieceSource> sources;
    for (const Piece& p : pieces) {
      sources.push_back(StepPieceSource{.tokens = *p.tokens,
                                        .block_table = tables_[p.sequence],
                                        .begin = p.begin,
                                        .count = p.count,
                                        .logits_all = p.logits_all,
                                        .logits_last = true});
    }
    const PackedStep packed =
        pack_step(sources, kBlockSize, /*tile_rows=*/1, vocab(), kMaxSequences * kBlocksPerSequence);
    std::vector<float> logits(size_t(packed.logit_rows) * vocab());
    loop_->forward(backend_, packed.inputs_at(packed.words.data()), kv_, logits.data(), nullptr, comm_);
    EXPECT_EQ(backend_.arena().used(), 0u) << "the arena is rewound after each step";
    return logits;
  }

 private:
  ThreadPool pool_;
  ExecContext exec_{&pool_};
  Reference reference_;
  LoadedModel loaded_;
  CpuWeightMemory memory_;
  ModelWeights weights_;
  CpuStepBackend backend_;
  std::unique_ptr<DecoderLoop> loop_;
  std::vector<std::vector<float>> cache_;
  KvLayers kv_;
  std::vector<int32_t> tables_[kMaxSequences];
  Communicator* comm_;
};

double row_error(const std::vector<float>& got, size_t first_row, const TensorView& expected, int64_t expected_row,
                 int64_t rows, int vocab) {
  return testing::max_row_relative_error(got.data() + first_row * vocab,
                                         expected.as<float>() + expected_row * vocab, rows, vocab);
}

class DecoderLoopTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderLoopTest, LogitsMatchTransformersAtEveryPosition) {
  LoopModel model(GetParam());
  for (int j = 0; j < 5; ++j) {
    const std::vector<int32_t> prompt = model.reference().ids("prompt_" + std::to_string(j));
    const int n = static_cast<int>(prompt.size());
    const std::vector<float> logits = model.step({{j, &prompt, 0, n, true}});
    const TensorView expected = model.reference().tensor("logits_" + std::to_string(j));
    EXPECT_LT(row_error(logits, 0, expected, 0, n, model.vocab()), kTolerance) << GetParam() << " prompt " << j;
  }
}

TEST_P(DecoderLoopTest, GreedyTokensMatchTransformers) {
  LoopModel model(GetParam());
  for (int j = 0; j < 5; ++j) {
    std::vector<int32_t> tokens = model.reference().ids("prompt_" + std::to_string(j));
    const int prompt_len = static_cast<int>(tokens.size());
    std::vector<float> logits = model.step({{j, &tokens, 0, prompt_len, false}});
    std::vector<int32_t> generated;
    for (int step = 0; step < kGreedyTokens; ++step) {
      generated.push_back(testing::argmax(logits.data(), model.vocab()));
      if (step + 1 == kGreedyTokens) break;
      tokens.push_back(generated.back());
      logits = model.step({{j, &tokens, static_cast<int>(tokens.size()) - 1, 1, false}});
    }
    EXPECT_EQ(generated, model.reference().ids("greedy_" + std::to_string(j))) << GetParam() << " prompt " << j;
  }
}

TEST_P(DecoderLoopTest, MixedBatchGivesEachSequenceItsLogits) {
  LoopModel model(GetParam());
  const int vocab = model.vocab();
  const std::vector<int32_t> a = model.reference().ids("prompt_2");  // 17 tokens
  const std::vector<int32_t> b = model.reference().ids("prompt_3");  // 64 tokens
  const std::vector<int32_t> c = model.reference().ids("prompt_1");  // 5 tokens
  ASSERT_EQ(a.size(), 17u);
  ASSERT_EQ(b.size(), 64u);
  const int n_c = static_cast<int>(c.size());
  const TensorView expected_a = model.reference().tensor("logits_2");
  const TensorView expected_b = model.reference().tensor("logits_3");
  const TensorView expected_c = model.reference().tensor("logits_1");
  // Step 1: a's first 16 tokens, b's first 40 (a chunk), c whole.
  std::vector<float> logits = model.step({{2, &a, 0, 16, true}, {3, &b, 0, 40, true}, {1, &c, 0, n_c, true}});
  EXPECT_LT(row_error(logits, 0, expected_a, 0, 16, vocab), kTolerance);
  EXPECT_LT(row_error(logits, 16, expected_b, 0, 40, vocab), kTolerance);
  EXPECT_LT(row_error(logits, 56, expected_c, 0, n_c, vocab), kTolerance);
  // Step 2: a's last token (a decode row) beside the rest of b (a chunk after cached context).
  logits = model.step({{2, &a, 16, 1, true}, {3, &b, 40, 24, true}});
  EXPECT_LT(row_error(logits, 0, expected_a, 16, 1, vocab), kTolerance);
  EXPECT_LT(row_error(logits, 1, expected_b, 40, 24, vocab), kTolerance);
}

// Tensor parallelism on the loop: each rank a thread with its own shard, KV cache and backend,
// the TP group an in-process communicator. All five prompts prefilled in one step (every
// position's logits), then 16 batched greedy decode steps: rank 0's logits within 1e-4 of
// transformers and its greedy tokens identical, for every TP size the model can be split into.
TEST_P(DecoderLoopTest, TensorParallelRanksMatchTransformers) {
  auto config = load_model_config(testing::fixture_model(GetParam()));
  ASSERT_TRUE(config.ok()) << config.error().message;
  int layouts = 0;
  for (int tp : {2, 4}) {
    if (!validate_shard_spec(*config, ShardSpec{.tp = {0, tp}}).ok()) continue;
    ++layouts;
    SCOPED_TRACE("tp " + std::to_string(tp));
    LocalGroup group(tp);
    std::vector<std::vector<float>> prefill(tp);
    std::vector<std::vector<std::vector<int32_t>>> generated(tp, std::vector<std::vector<int32_t>>(5));
    std::vector<std::thread> ranks;
    for (int rank = 0; rank < tp; ++rank) {
      ranks.emplace_back([&, rank] {
        const std::unique_ptr<Communicator> comm = group.communicator(rank);
        LoopModel model(GetParam(), Partition{rank, tp}, comm.get(), /*threads=*/1);
        std::vector<std::vector<int32_t>> tokens(5);
        std::vector<LoopModel::Piece> pieces;
        for (int j = 0; j < 5; ++j) {
          tokens[j] = model.reference().ids("prompt_" + std::to_string(j));
          pieces.push_back({j, &tokens[j], 0, static_cast<int>(tokens[j].size()), true});
        }
        std::vector<float> logits = model.step(pieces);
        prefill[rank] = logits;
        const int vocab = model.vocab();
        size_t last_row = 0;  // each prompt's last row in the prefill's logits
        std::vector<size_t> rows(5);
        for (int j = 0; j < 5; ++j) rows[j] = (last_row += tokens[j].size()) - 1;
        for (int step = 0; step < kGreedyTokens; ++step) {
          pieces.clear();
          for (int j = 0; j < 5; ++j) {
            const size_t row = step == 0 ? rows[j] : size_t(j);
            generated[rank][j].push_back(testing::argmax(logits.data() + row * vocab, vocab));
            tokens[j].push_back(generated[rank][j].back());
            pieces.push_back({j, &tokens[j], static_cast<int>(tokens[j].size()) - 1, 1, false});
          }
          if (step + 1 < kGreedyTokens) logits = model.step(pieces);
        }
      });
    }
    for (std::thread& rank : ranks) rank.join();
    const Reference reference(testing::fixture_model(GetParam()) + "/reference.safetensors");
    const int vocab = config->vocab_size;
    size_t first = 0;
    for (int j = 0; j < 5; ++j) {
      const TensorView expected = reference.tensor("logits_" + std::to_string(j));
      const int64_t n = expected.dim(0);
      EXPECT_LT(row_error(prefill[0], first, expected, 0, n, vocab), kTolerance) << "prompt " << j;
      first += n;
      EXPECT_EQ(generated[0][j], reference.ids("greedy_" + std::to_string(j))) << "prompt " << j;
      for (int rank = 1; rank < tp; ++rank) EXPECT_EQ(generated[rank][j], generated[0][j]) << "rank " << rank;
    }
  }
  EXPECT_GT(layouts, 0) << "no TP size splits " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DecoderLoopTest,
                         ::testing::Values("tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2",
                                           "tiny-deepseek_v3"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace moeserve

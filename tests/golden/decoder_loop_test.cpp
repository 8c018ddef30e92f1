// The one decoder loop (model/decoder_loop.h) on the CPU step backend, against transformers: every
// fixture family's logits at every position within 1e-4 (as the golden tests hold the CPU
// decoder), its 16 greedy tokens identical, and a batch that mixes a prefill chunk, a whole
// prompt and decode rows of three sequences giving each sequence's reference logits — the packed
// step inputs (model/step_model.h, runtime/step_packing.h) with several pieces, and MLA's plain
// form for long pieces beside its absorbed form for short ones; and a KV cache of e4m3 bytes
// giving, bit for bit, the logits of a float32 one holding the values rounded to e4m3.
#include <gtest/gtest.h>

#include <cstring>
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

// What the KV cache holds: float32 values; float32 values rounded to e4m3 as they are written
// (CpuNumerics::kv_fp8 over a float32 cache); or the e4m3 bytes themselves (KvLayers::fp8, as
// CpuDevice holds them under --kv-cache-dtype fp8).
enum class LoopKv { kF32, kF32RoundedToFp8, kFp8Bytes };

// One fixture model on the CPU backend: its weights packed for the loop, a paged KV cache with
// kBlocksPerSequence blocks per sequence slot (slot s owns the blocks from s · kBlocksPerSequence
// on, in reverse order, so that block order differs from position order).
class LoopModel {
 public:
  // shard: this model is one rank's part, and step() runs with `comm` (its groups).
  explicit LoopModel(const std::string& name, const ShardSpec& shard = {}, ParallelComm comm = {}, int threads = 2,
                     LoopKv kv = LoopKv::kF32)
      : pool_(threads),
        reference_(testing::fixture_model(name) + "/reference.safetensors"),
        backend_(exec_, 256 << 20, CpuNumerics{.kv_fp8 = kv != LoopKv::kF32}),
        comm_(comm) {
    auto loaded = load_model(testing::fixture_model(name), LoadOptions{});
    if (!loaded.ok()) throw std::runtime_error(loaded.error().message);
    loaded_ = std::move(loaded.value());
    const ModelConfig& config = loaded_.model->config();
    const WeightPlan plan = WeightPlan::build(config);
    std::vector<Tensor> copies;  // column blocks copied out of the checkpoint, until packed
    auto weights = load_model_weights(config, ShardedWeights(*loaded_.weights, plan, copies), shard, memory_);
    if (!weights.ok()) throw std::runtime_error(weights.error().message);
    weights_ = std::move(weights.value());
    loop_ = std::make_unique<DecoderLoop>(config, weights_, shard);
    kv_.block_size = kBlockSize;
    kv_.entry_size = kv_entry_size(config, shard.tp);
    kv_.fp8 = kv == LoopKv::kFp8Bytes;
    const size_t elements = size_t(kMaxSequences) * kBlocksPerSequence * kBlockSize * kv_.entry_size;
    for (int l = 0; l < config.num_layers; ++l) {
      if (kv_.fp8) {  // [elements] e4m3 bytes, reached through the float pointer as KvLayers says
        byte_cache_.emplace_back(elements, uint8_t{0});
        kv_.layers.push_back(reinterpret_cast<float*>(byte_cache_.back().data()));
      } else {
        cache_.emplace_back(elements, 0.0f);
        kv_.layers.push_back(cache_.back().data());
      }
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
    loop_->forward(backend_, packed.inputs_at(packed.words.data()), kv_, logits.data(), {}, comm_);
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
  std::vector<std::vector<uint8_t>> byte_cache_;
  KvLayers kv_;
  std::vector<int32_t> tables_[kMaxSequences];
  ParallelComm comm_;
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

// --kv-cache-dtype fp8: a cache of e4m3 bytes gives, bit for bit, the logits of a float32 cache
// whose values are rounded to e4m3 as they are written (decoding e4m3 is exact), through
// the mixed batch above (prefill pieces in MLA's plain form, decode rows and a chunk after cached
// context in the absorbed form, V3.2's indexer choosing among more keys than its index_topk) and
// greedy decode steps; and the rounding changes them (the float32 cache's logits differ).
TEST_P(DecoderLoopTest, Fp8KvBytesGiveTheRoundedFloatCachesLogitsBitForBit) {
  LoopModel exact(GetParam());
  LoopModel rounded(GetParam(), {}, {}, 2, LoopKv::kF32RoundedToFp8);
  LoopModel bytes(GetParam(), {}, {}, 2, LoopKv::kFp8Bytes);
  const int vocab = bytes.vocab();
  std::vector<int32_t> a = bytes.reference().ids("prompt_2");
  std::vector<int32_t> b = bytes.reference().ids("prompt_3");
  const std::vector<int32_t> c = bytes.reference().ids("prompt_1");
  const int n_c = static_cast<int>(c.size());
  // The bits of each logit, so that equality is bit for bit.
  const auto bits = [](const std::vector<float>& logits) {
    std::vector<uint32_t> out(logits.size());
    std::memcpy(out.data(), logits.data(), logits.size() * sizeof(float));
    return out;
  };
  const auto step = [&](const std::vector<LoopModel::Piece>& pieces, const char* what) {
    const std::vector<float> got = bytes.step(pieces);
    EXPECT_EQ(bits(got), bits(rounded.step(pieces))) << what;
    EXPECT_NE(got, exact.step(pieces)) << what << ": nothing was rounded";
    return got;
  };
  step({{2, &a, 0, 16, true}, {3, &b, 0, 40, true}, {1, &c, 0, n_c, true}}, "prefill pieces");
  std::vector<float> logits = step({{2, &a, 16, 1, true}, {3, &b, 40, 24, true}}, "decode row and a later chunk");
  size_t b_row = 24;             // b's last row in the step's logits (after a's one row)
  for (int i = 0; i < 4; ++i) {  // greedy decode of a and b together
    a.push_back(testing::argmax(logits.data(), vocab));
    b.push_back(testing::argmax(logits.data() + b_row * vocab, vocab));
    logits =
        step({{2, &a, static_cast<int>(a.size()) - 1, 1, false}, {3, &b, static_cast<int>(b.size()) - 1, 1, false}},
             "decode rows");
    b_row = 1;
  }
}

// A parallel layout: TP × DP ranks, with or without expert parallelism over all of them.
struct Layout {
  const char* name;
  int tp = 1;
  int dp = 1;
  bool ep = false;
  All2AllBackend all2all = All2AllBackend::kAllgatherReducescatter;
  ExpertPlacement placement = ExpertPlacement::kLinear;
};

// Parallel layouts on the loop: each rank a thread with its own shard, KV cache and backend; TP
// groups (one per DP replica) and the EP group in-process communicators. Prompt j runs on
// replica j % dp: its prompts prefilled in one step (every position's logits), then 16 batched
// greedy decode steps. Every replica's first TP rank is within 1e-4 of transformers at every
// position and its greedy tokens identical, for every layout the model can be split into.
TEST_P(DecoderLoopTest, ParallelLayoutsMatchTransformers) {
  auto config = load_model_config(testing::fixture_model(GetParam()));
  ASSERT_TRUE(config.ok()) << config.error().message;
  const Reference reference(testing::fixture_model(GetParam()) + "/reference.safetensors");
  const int vocab = config->vocab_size;
  int layouts = 0;
  for (const Layout& layout : {Layout{"tp2", 2}, Layout{"tp4", 4}, Layout{"dp2_ep", 1, 2, true},
                               Layout{"dp2_ep_alltoall", 1, 2, true, All2AllBackend::kAlltoall},
                               Layout{"tp2_dp2_ep", 2, 2, true},
                               Layout{"tp2_dp2_ep_alltoall_round_robin", 2, 2, true, All2AllBackend::kAlltoall,
                                      ExpertPlacement::kRoundRobin}}) {
    const int ranks = layout.tp * layout.dp;
    auto shard_of = [&](int rank) {
      return ShardSpec{.tp = {rank % layout.tp, layout.tp},
                       .expert_parallel = layout.ep,
                       .ep = layout.ep ? Partition{rank, ranks} : Partition{},
                       .placement = layout.placement,
                       .all2all = layout.all2all};
    };
    if (!validate_shard_spec(*config, shard_of(0)).ok()) continue;
    ++layouts;
    SCOPED_TRACE(layout.name);
    std::vector<std::unique_ptr<LocalGroup>> tp_groups;
    for (int d = 0; d < layout.dp; ++d) tp_groups.push_back(std::make_unique<LocalGroup>(layout.tp));
    LocalGroup ep_group(ranks);
    std::vector<std::vector<float>> prefill(ranks);
    std::vector<std::vector<std::vector<int32_t>>> generated(ranks);
    std::vector<std::thread> threads;
    for (int rank = 0; rank < ranks; ++rank) {
      threads.emplace_back([&, rank] {
        const int replica = rank / layout.tp;
        const std::unique_ptr<Communicator> tp = tp_groups[replica]->communicator(rank % layout.tp);
        const std::unique_ptr<Communicator> ep = layout.ep ? ep_group.communicator(rank) : nullptr;
        LoopModel model(GetParam(), shard_of(rank), ParallelComm{layout.tp > 1 ? tp.get() : nullptr, ep.get()},
                        /*threads=*/1);
        std::vector<std::vector<int32_t>> tokens;
        std::vector<LoopModel::Piece> pieces;
        for (int j = replica; j < 5; j += layout.dp) tokens.push_back(reference.ids("prompt_" + std::to_string(j)));
        for (size_t i = 0; i < tokens.size(); ++i) {
          pieces.push_back({static_cast<int>(i), &tokens[i], 0, static_cast<int>(tokens[i].size()), true});
        }
        std::vector<float> logits = model.step(pieces);
        prefill[rank] = logits;
        generated[rank].resize(tokens.size());
        std::vector<size_t> last_rows(tokens.size());  // each prompt's last row in the prefill's logits
        size_t rows = 0;
        for (size_t i = 0; i < tokens.size(); ++i) last_rows[i] = (rows += tokens[i].size()) - 1;
        for (int step = 0; step < kGreedyTokens; ++step) {
          pieces.clear();
          for (size_t i = 0; i < tokens.size(); ++i) {
            const size_t row = step == 0 ? last_rows[i] : i;
            generated[rank][i].push_back(testing::argmax(logits.data() + row * vocab, vocab));
            tokens[i].push_back(generated[rank][i].back());
            pieces.push_back({static_cast<int>(i), &tokens[i], static_cast<int>(tokens[i].size()) - 1, 1, false});
          }
          if (step + 1 < kGreedyTokens) logits = model.step(pieces);
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    for (int rank = 0; rank < ranks; ++rank) {
      const int replica = rank / layout.tp;
      size_t first = 0, i = 0;
      for (int j = replica; j < 5; j += layout.dp, ++i) {
        const TensorView expected = reference.tensor("logits_" + std::to_string(j));
        const int64_t n = expected.dim(0);
        if (rank % layout.tp == 0) {
          EXPECT_LT(row_error(prefill[rank], first, expected, 0, n, vocab), kTolerance) << "prompt " << j;
        }
        first += n;
        EXPECT_EQ(generated[rank][i], reference.ids("greedy_" + std::to_string(j))) << "prompt " << j << " rank "
                                                                                     << rank;
      }
    }
  }
  EXPECT_GE(layouts, 4) << "layouts that split " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DecoderLoopTest,
                         ::testing::Values("tiny-mixtral", "tiny-qwen2_moe", "tiny-qwen3_moe", "tiny-deepseek_v2",
                                           "tiny-deepseek_v3", "tiny-deepseek_v3-fp8", "tiny-qwen3_moe-fp8",
                                           "tiny-gpt_oss", "tiny-gpt_oss-mxfp4", "tiny-llama4", "tiny-deepseek_v32"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace moeserve

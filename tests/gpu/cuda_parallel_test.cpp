// CUDA ranks of every TP × DP layout, all on one GPU (runtime/cuda/cuda_ranks.h), held to
// transformers' reference as the CPU's layouts are (parallel_golden.h: each fixture's five
// prompts spread over the DP replicas, prefill logits within 1e-4, 16 greedy tokens equal), in
// the float32-like split-bf16 mode. A layout the ranks split wrong (a head, KV head or expert
// slice, a missed all-reduce) fails the logits; one that mixes up replicas fails the tokens.
#include <gtest/gtest.h>

#include "parallel_golden.h"
#include "runtime/cuda/cuda_ranks.h"

namespace moeserve {
namespace {

struct CudaLayout {
  std::string model;
  int tp = 1;
  int dp = 1;
  bool ep = false;  // expert parallel, over allgather_reducescatter or (alltoall) nccl_alltoall
  bool alltoall = false;
};

std::string layout_name(const ::testing::TestParamInfo<CudaLayout>& info) {
  std::string name = info.param.model + "_tp" + std::to_string(info.param.tp) + "_dp" + std::to_string(info.param.dp);
  if (info.param.ep) name += info.param.alltoall ? "_ep_alltoall" : "_ep_allgather";
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

class CudaParallelTest : public ::testing::TestWithParam<CudaLayout> {};

Result<std::unique_ptr<RankGroup>> cuda_group(const ModelConfig& config, const WeightSource& weights,
                                              const ParallelConfig& parallel, int num_blocks) {
  const CudaRunnerOptions options{.num_kv_blocks = num_blocks,
                                  .block_size = testing::kParallelBlockSize,
                                  .max_num_batched_tokens = 512,
                                  .prefill_precision = cuda::PrefillPrecision::kSplitBf16};
  MS_ASSIGN_OR_RETURN(CudaRanks ranks, make_cuda_ranks(config, weights, 0, parallel, options));
  EXPECT_EQ(ranks.num_kv_blocks, num_blocks);
  return RankGroup::create(config, parallel, std::move(ranks.executor), num_blocks, testing::kParallelBlockSize);
}

TEST_P(CudaParallelTest, EqualsTransformersWithEveryRankOnOneGpu) {
  ParallelConfig parallel;
  parallel.tensor_parallel_size = GetParam().tp;
  parallel.data_parallel_size = GetParam().dp;
  parallel.enable_expert_parallel = GetParam().ep;
  if (GetParam().alltoall) parallel.all2all = All2AllBackend::kAlltoall;
  testing::check_dir_against_reference(testing::fixture_model(GetParam().model), parallel, {}, cuda_group);
}

// GQA with KV heads split (mixtral, qwen3_moe: 2 KV heads) and replicated (TP 4 over 2 KV heads),
// MLA (deepseek_v2, deepseek_v3 with its group-limited routing), shared experts with a gate
// (qwen2_moe), sinks, biases and sliding windows (gpt_oss), chunked attention and a shared expert
// (llama4), replicas alone and under TP; expert parallelism over both all-to-all backends, with
// TP (sequence-parallel MoE), shared experts, group-limited routing and MXFP4 experts whole on
// their rank.
INSTANTIATE_TEST_SUITE_P(Layouts, CudaParallelTest,
                         ::testing::Values(CudaLayout{"tiny-mixtral", 2, 1}, CudaLayout{"tiny-mixtral", 1, 2},
                                           CudaLayout{"tiny-mixtral", 2, 2}, CudaLayout{"tiny-qwen3_moe", 4, 1},
                                           CudaLayout{"tiny-qwen2_moe", 4, 1}, CudaLayout{"tiny-deepseek_v2", 2, 1},
                                           CudaLayout{"tiny-deepseek_v3", 4, 1}, CudaLayout{"tiny-gpt_oss-bf16", 2, 1},
                                           CudaLayout{"tiny-llama4-bf16", 2, 2},
                                           CudaLayout{"tiny-mixtral", 1, 2, true, false},
                                           CudaLayout{"tiny-mixtral", 2, 2, true, true},
                                           CudaLayout{"tiny-qwen2_moe", 1, 4, true, true},
                                           CudaLayout{"tiny-deepseek_v3", 2, 2, true, false},
                                           CudaLayout{"tiny-gpt_oss-mxfp4", 1, 2, true, true},
                                           CudaLayout{"tiny-llama4-bf16", 1, 2, true, false}),
                         layout_name);

// EPLB is refused by name (its weight moves are the CPU's only).
TEST(CudaRanks, RefuseEplb) {
  const auto config = load_model_config(testing::fixture_model("tiny-mixtral"));
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto checkpoint = Checkpoint::open(testing::fixture_model("tiny-mixtral"));
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.error().message;
  ParallelConfig parallel;
  parallel.data_parallel_size = 2;
  parallel.enable_expert_parallel = true;
  parallel.eplb.enabled = true;
  const auto ranks = make_cuda_ranks(*config, *checkpoint, 0, parallel, CudaRunnerOptions{.num_kv_blocks = 4});
  ASSERT_FALSE(ranks.ok());
  EXPECT_NE(ranks.error().message.find("--enable-eplb on CUDA ranks is not implemented yet"), std::string::npos)
      << ranks.error().message;
}

}  // namespace
}  // namespace moeserve

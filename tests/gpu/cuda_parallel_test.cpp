// CUDA ranks of every TP × DP layout, all on one GPU (backend/cuda/cuda_ranks.h), held to
// transformers' reference as the CPU's layouts are (parallel_golden.h: each fixture's five
// prompts spread over the DP replicas, prefill logits within 1e-4, 16 greedy tokens equal), in
// the float32-like split-bf16 mode. A layout the ranks split wrong (a head, KV head or expert
// slice, a missed all-reduce) fails the logits; one that mixes up replicas fails the tokens.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "parallel_golden.h"
#include "backend/cuda/cuda_ranks.h"

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
  const ModelRunnerOptions options{
      .num_kv_blocks = num_blocks, .block_size = testing::kParallelBlockSize, .max_num_batched_tokens = 512};
  MS_ASSIGN_OR_RETURN(CudaRanks ranks,
                      make_cuda_ranks(config, &weights, 0, parallel,
                                      CudaDeviceOptions{.prefill_precision = cuda::PrefillPrecision::kSplitBf16},
                                      options));
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

struct CudaEplbCase {
  std::string model;
  int tp, dp, redundant;
  All2AllBackend backend;
};

class CudaEplbTest : public ::testing::TestWithParam<CudaEplbCase> {};

// EPLB on CUDA ranks: with a step_interval of 4 the experts move between the ranks' device
// memory four times while the fixture generates (redundant replicas included), and the logits
// and greedy tokens still match the reference as with no EPLB.
TEST_P(CudaEplbTest, RearrangesOnTheGpuWithUnchangedOutputs) {
  const CudaEplbCase& param = GetParam();
  ParallelConfig parallel{.tensor_parallel_size = param.tp,
                          .data_parallel_size = param.dp,
                          .enable_expert_parallel = true,
                          .all2all = param.backend,
                          .num_redundant_experts = param.redundant};
  parallel.eplb =
      EplbConfig{.enabled = true, .window_size = 3, .step_interval = 4, .num_redundant_experts = param.redundant};
  ASSERT_TRUE(parallel.validate().ok());
  testing::check_dir_against_reference(
      testing::fixture_model(param.model), parallel,
      [](RankGroup& group) {
        const EpStats stats = group.ep_stats();
        EXPECT_EQ(stats.rearrangements, 4);  // after steps 1, 5, 9 and 13 of 16
        ASSERT_FALSE(stats.recent_rearrangements.empty());
        EXPECT_FALSE(stats.recent_rearrangements.front().layers.empty()) << "the first one moved experts";
        int64_t total = 0;
        for (int64_t tokens : stats.rank_tokens_total) total += tokens;
        EXPECT_GT(total, 0);
      },
      cuda_group);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, CudaEplbTest,
    ::testing::Values(CudaEplbCase{"tiny-mixtral", 1, 2, 2, All2AllBackend::kAllgatherReducescatter},
                      CudaEplbCase{"tiny-qwen2_moe", 2, 2, 4, All2AllBackend::kAlltoall},
                      CudaEplbCase{"tiny-deepseek_v3", 2, 2, 4, All2AllBackend::kAlltoall},
                      CudaEplbCase{"tiny-gpt_oss-mxfp4", 1, 2, 2, All2AllBackend::kAllgatherReducescatter}),
    [](const ::testing::TestParamInfo<CudaEplbCase>& info) {
      std::string name =
          info.param.model + "_tp" + std::to_string(info.param.tp) + "_dp" + std::to_string(info.param.dp);
      for (char& c : name) {
        if (c == '-') c = '_';
      }
      return name;
    });

// The CLI end to end on the demo model: greedy `generate --device cuda` gives one GPU's tokens in
// every layout (the start-up log naming the CUDA ranks), EPLB rearranging included, with the
// ranks as worker processes over NCCL (the default on GPUs, as vLLM's mp) and as threads.
TEST(CudaRanksCli, GenerateMatchesOneGpuInEveryLayout) {
  const auto generate = [](const std::vector<std::string>& layout) {
    std::vector<std::string> args = {
        "generate",     testing::demo_model(), "--prompt", "And God said", "--max-tokens", "24",
        "--ignore-eos", "--temperature",       "0",        "--json",       "--device",     "cuda"};
    args.insert(args.end(), layout.begin(), layout.end());
    return testing::run_moeserve(args);
  };
  const auto ids = [](const testing::CommandResult& run) {  // the --json line (log lines may follow it)
    const size_t begin = run.output.rfind("\n{", run.output.find("\"output_ids\"")) + 1;
    const std::string line = run.output.substr(begin, run.output.find('\n', begin) - begin);
    return nlohmann::json::parse(line)["output_ids"].get<std::vector<int>>();
  };
  const testing::CommandResult single = generate({});
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const std::vector<int> expected = ids(single);
  ASSERT_EQ(expected.size(), 24u);
  const std::vector<std::vector<std::string>> layouts = {
      // CUDA ranks on threads, their collectives staged through the host.
      {"-tp", "2", "--distributed-executor-backend", "threads"},
      {"-dp", "2", "--enable-expert-parallel", "--distributed-executor-backend", "threads"},
      {"-tp", "2", "-dp", "2", "--enable-expert-parallel", "--all2all-backend", "nccl_alltoall",
       "--distributed-executor-backend", "threads"},
      {"-dp", "2", "--enable-expert-parallel", "--enable-eplb", "--eplb-config",
       R"({"window_size":4,"step_interval":4})", "--distributed-executor-backend", "threads"},
      // CUDA ranks in worker processes, over NCCL: the default.
      {"-tp", "2"},
      {"-dp", "2", "--enable-expert-parallel", "--enable-eplb", "--eplb-config",
       R"({"window_size":4,"step_interval":4})"},
      {"-tp", "2", "-dp", "2", "--enable-expert-parallel", "--all2all-backend", "nccl_alltoall",
       "--distributed-executor-backend", "mp"}};
  for (const std::vector<std::string>& layout : layouts) {
    const testing::CommandResult run = generate(layout);
    ASSERT_EQ(run.exit_code, 0) << layout[0] << " " << layout[1] << "\n" << run.output;
    EXPECT_NE(run.output.find(" on cuda: "), std::string::npos) << run.output;
    const bool threads = layout.back() == "threads";
    EXPECT_EQ(run.output.find("ranks as worker processes") != std::string::npos, !threads) << run.output;
    EXPECT_EQ(ids(run), expected) << layout[0] << " " << layout[1] << (layout.size() > 2 ? " ..." : "");
  }
}

}  // namespace
}  // namespace moeserve

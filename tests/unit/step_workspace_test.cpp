// The step workspace from the config alone (model/step_workspace.h) is the CUDA runner's arena:
// the bytes the runner reserved in bench/results/2026-12-07-h100-workspace-bound.json (an H100
// lease, `moeserve bench latency --device cuda --load-format dummy --dtype bfloat16` of catalog
// shapes; its `workspace_bytes`), reproduced exactly, for experts run one at a time past 256 rows
// ("new") and for the streamed bound at every size ("main", the bound before that commit).
#include <gtest/gtest.h>

#include "model/step_workspace.h"
#include "unit/catalog_config.h"

namespace moeserve {
namespace {

using testing::catalog_shape;

TEST(StepWorkspace, CudaBoundIsTheRunnersMeasuredArena) {
  struct Case {
    const char* run;
    const char* id;
    int layers;
    int max_tokens;
    bool experts_large;
    size_t measured;
  };
  for (const Case& c : {Case{"mixtral-new", "mistralai/Mixtral-8x7B-v0.1", 8, 8192, true, 6153306112},
                        Case{"mixtral-main", "mistralai/Mixtral-8x7B-v0.1", 8, 8192, false, 13266845696},
                        Case{"DeepSeek-V3-new", "deepseek-ai/DeepSeek-V3", 4, 8192, true, 21901180928},
                        Case{"DeepSeek-V3-new4096", "deepseek-ai/DeepSeek-V3", 4, 4096, true, 11122556928},
                        Case{"DeepSeek-V3-main4096", "deepseek-ai/DeepSeek-V3", 4, 4096, false, 26792493056},
                        Case{"Kimi-K2-Instruct-new", "moonshotai/Kimi-K2-Instruct", 2, 8192, true, 18574868480},
                        Case{"Kimi-K2-Instruct-main4096", "moonshotai/Kimi-K2-Instruct", 2, 4096, false, 25902907392},
                        Case{"v2lite-new", "deepseek-ai/DeepSeek-V2-Lite", 0, 8192, true, 7313489920}}) {
    const ModelConfig config = catalog_shape(c.id, c.layers);
    EXPECT_EQ(cuda::step_workspace_bytes(config, c.max_tokens, c.experts_large), c.measured) << c.run;
  }
}

// A server's arena holds one logit row a sequence: every row's logits (8192 × vocab float32)
// shrink to max_logit_rows of them, and nothing else moves.
TEST(StepWorkspace, ACapOnLogitRowsTakesOnlyTheirLogits) {
  const ModelConfig mixtral = catalog_shape("mistralai/Mixtral-8x7B-v0.1", 8);
  EXPECT_EQ(cuda::step_workspace_bytes(mixtral, 8192, true, nullptr, 256),
            size_t{6153306112} - size_t{8192 - 256} * mixtral.vocab_size * sizeof(float));
  EXPECT_EQ(cuda::step_workspace_bytes(mixtral, 8192, true, nullptr, 8192), size_t{6153306112});
  // (a cap above the rows is the rows)
  EXPECT_EQ(cuda::step_workspace_bytes(mixtral, 128, false, nullptr, 1024),
            cuda::step_workspace_bytes(mixtral, 128, false));
}

}  // namespace
}  // namespace moeserve

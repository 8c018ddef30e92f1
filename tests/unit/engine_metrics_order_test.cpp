// A request's finished output leaves the engine after its last step's metrics are recorded: a
// client that has its answer and then reads /metrics (or the live page's totals) finds every
// token of it counted, its experts' routing included, and the running gauge past it.
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "runtime/cpu_runner.h"

namespace moeserve {
namespace {

const char* kModel = MOESERVE_MODELS_DIR "/kjv-mixtral-tiny";

// What the engine has reported so far (engine thread).
class Recorder : public EngineMetrics {
 public:
  void on_step(const StepMetrics& step) override {
    std::lock_guard<std::mutex> lock(mutex);
    generation_tokens += step.generation_tokens;
    num_running = step.num_running;
    if (step.expert_tokens != nullptr) {
      for (int64_t count : *step.expert_tokens) routed += count;
    }
  }
  void on_inter_token_latency(double) override {}
  void on_request_finished(const RequestMetrics&) override {}

  std::mutex mutex;
  int64_t generation_tokens = 0;
  int64_t routed = 0;
  int num_running = -1;
};

TEST(EngineMetricsOrder, AFinishedAnswerFindsItsLastStepCounted) {
  auto loaded = load_model(kModel, LoadOptions{});
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  auto runner = make_cpu_runner(std::move(*loaded), {.num_kv_blocks = 64, .block_size = 16, .threads = 2});
  ASSERT_TRUE(runner.ok()) << runner.error().message;
  Recorder recorder;
  EngineConfig config;
  config.scheduler.max_model_len = 128;
  auto engine = Engine::create(kModel, std::move(*runner), nullptr, config, &recorder);
  ASSERT_TRUE(engine.ok()) << engine.error().message;

  // Three requests of different lengths, so that the last step of each finishes only it.
  struct Seen {
    int64_t own_tokens = 0;
    int64_t generation_tokens = -1;  // recorded when its finished output arrived
    int64_t routed = -1;
    int num_running = -1;
  };
  std::mutex mutex;
  std::vector<Seen> seen(3);
  std::vector<std::promise<void>> done(3);
  for (int i = 0; i < 3; ++i) {
    GenerationRequest request;
    request.request_id = "r" + std::to_string(i);
    request.prompt_ids = {1, 415, 6509, 28705};
    request.sampling.temperature = 0.0f;
    request.stop.max_tokens = 3 + 4 * i;
    request.stop.ignore_eos = true;
    ASSERT_TRUE((*engine)
                    ->submit(std::move(request),
                             [&, i](RequestOutput output) {
                               std::lock_guard<std::mutex> lock(mutex);
                               seen[i].own_tokens += static_cast<int64_t>(output.new_token_ids.size());
                               if (!output.finished) return;
                               std::lock_guard<std::mutex> recorded(recorder.mutex);
                               seen[i].generation_tokens = recorder.generation_tokens;
                               seen[i].routed = recorder.routed;
                               seen[i].num_running = recorder.num_running;
                               done[i].set_value();
                             })
                    .ok());
  }
  (*engine)->start();
  for (auto& promise : done) promise.get_future().wait();
  (*engine)->stop();
  // Every request's tokens were counted by the time it finished: the shorter ones' tokens and
  // as many of the longer ones' as they had then (each step samples one token for each).
  EXPECT_EQ(seen[0].generation_tokens, 3 * 3);
  EXPECT_EQ(seen[1].generation_tokens, 3 * 3 + 2 * 4);
  EXPECT_EQ(seen[2].generation_tokens, 3 * 3 + 2 * 4 + 4);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(seen[i].own_tokens, 3 + 4 * i);
    EXPECT_EQ(seen[i].num_running, 2 - i) << "request " << i;  // the gauge is past it
    EXPECT_GT(seen[i].routed, 0);
  }
  // Each token of the prompts and the answers was routed to top_k experts in every MoE layer.
  const ModelConfig& model = *(*engine)->info().model_config;
  EXPECT_EQ(seen[2].routed, int64_t{3 * 4 + 3 * 3 + 2 * 4 + 4 - 3} * model.moe->top_k * model.num_layers);
}

}  // namespace
}  // namespace moeserve

// The engine's greedy fast path (Runner::computes_argmax, as the CUDA runner implements it):
// requests whose next token is the plain argmax take it from the runner and never read their
// logits row; every other request (sampling, logprobs, penalties, min_tokens) still samples
// from the logits. Checked with a runner that computes the argmax on the host and then poisons
// the rows it was told nobody reads: the outputs must equal an engine on the plain CPU runner.
#include <gtest/gtest.h>

#include <cmath>
#include <future>
#include <limits>
#include <map>

#include "engine/engine.h"
#include "runtime/cpu_runner.h"
#include "runtime/sampler.h"

namespace moeserve {
namespace {

const char* kModel = MOESERVE_MODELS_DIR "/kjv-mixtral-tiny";

class ArgmaxRunner final : public Runner {
 public:
  explicit ArgmaxRunner(std::unique_ptr<Runner> inner) : inner_(std::move(inner)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  int num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  int block_size() const override { return inner_->block_size(); }
  size_t kv_memory_bytes() const override { return inner_->kv_memory_bytes(); }
  const ExpertLoad& expert_load() const override { return inner_->expert_load(); }
  void reset_expert_load() override { inner_->reset_expert_load(); }
  bool computes_argmax() const override { return true; }
  std::span<const int32_t> argmax_tokens() const override { return argmax_; }

  Tensor execute(std::span<const RunnerSeq> seqs) override {
    Tensor logits = inner_->execute(seqs);
    const int vocab = config().vocab_size;
    argmax_.clear();
    int row = 0;
    for (const RunnerSeq& seq : seqs) {
      const int rows = seq.all_logits ? seq.num_new : (seq.samples ? 1 : 0);
      for (int r = 0; r < rows; ++r, ++row) {
        float* values = logits.f32() + int64_t(row) * vocab;
        argmax_.push_back(argmax_token(std::span<const float>(values, vocab)));
        if (seq.argmax_only) {
          ++argmax_only_rows;
          std::fill(values, values + vocab, std::numeric_limits<float>::quiet_NaN());
        }
      }
    }
    return logits;
  }

  int argmax_only_rows = 0;

 private:
  std::unique_ptr<Runner> inner_;
  std::vector<int32_t> argmax_;
};

std::unique_ptr<Runner> cpu_runner() {
  auto loaded = load_model(kModel, LoadOptions{});
  MS_CHECK(loaded.ok());
  auto runner = make_cpu_runner(std::move(*loaded), {.num_kv_blocks = 64, .block_size = 16, .threads = 1});
  MS_CHECK(runner.ok());
  return std::move(runner.value());
}

std::vector<GenerationRequest> requests() {
  std::vector<GenerationRequest> out;
  auto add = [&](const std::string& id, std::vector<int32_t> prompt, auto&& tweak) {
    GenerationRequest request{.request_id = id, .prompt_ids = std::move(prompt)};
    request.sampling.temperature = 0.0f;
    request.stop.max_tokens = 12;
    tweak(request);
    out.push_back(std::move(request));
  };
  add("greedy-a", {1, 415, 6509, 28705}, [](GenerationRequest&) {});
  add("greedy-b", {1, 560, 272, 5398, 403}, [](GenerationRequest&) {});
  add("min-tokens", {1, 415, 6509}, [](GenerationRequest& r) { r.stop.min_tokens = 5; });
  add("logprobs", {1, 560, 272}, [](GenerationRequest& r) { r.logprobs = 2; });
  add("penalty", {1, 415, 6509, 28705}, [](GenerationRequest& r) { r.sampling.repetition_penalty = 1.3f; });
  add("sampled", {1, 560, 272, 5398}, [](GenerationRequest& r) {
    r.sampling.temperature = 0.8f;
    r.sampling.seed = 11;
  });
  return out;
}

// Every request's generated ids (and logprobs), all submitted at once so they share steps.
std::map<std::string, std::pair<std::vector<int32_t>, std::vector<float>>> run(std::unique_ptr<Runner> runner) {
  EngineConfig config;
  config.scheduler.max_model_len = 128;
  auto engine = Engine::create(kModel, std::move(runner), nullptr, config);
  MS_CHECK(engine.ok());
  std::mutex mutex;
  std::map<std::string, std::pair<std::vector<int32_t>, std::vector<float>>> got;
  std::vector<std::promise<void>> done(requests().size());
  int index = 0;
  for (GenerationRequest& request : requests()) {
    const std::string id = request.request_id;
    std::promise<void>* finished = &done[index++];
    MS_CHECK((*engine)->submit(std::move(request), [&, id, finished](RequestOutput output) {
                       std::lock_guard<std::mutex> lock(mutex);
                       auto& [ids, logprobs] = got[id];
                       ids.insert(ids.end(), output.new_token_ids.begin(), output.new_token_ids.end());
                       for (const TokenLogprob& lp : output.new_logprobs) logprobs.push_back(lp.logprob);
                       if (output.finished) finished->set_value();
                     }).ok());
  }
  (*engine)->start();
  for (auto& promise : done) promise.get_future().wait();
  (*engine)->stop();
  return got;
}

TEST(EngineArgmax, GreedyRequestsTakeTheRunnersArgmaxAndOthersStillSample) {
  const auto reference = run(cpu_runner());
  auto argmax_runner = std::make_unique<ArgmaxRunner>(cpu_runner());
  ArgmaxRunner* observed = argmax_runner.get();
  const auto fast = run(std::move(argmax_runner));
  ASSERT_EQ(fast.size(), reference.size());
  for (const auto& [id, expected] : reference) {
    EXPECT_EQ(fast.at(id).first, expected.first) << id;
    ASSERT_EQ(fast.at(id).second.size(), expected.second.size()) << id;
    for (size_t i = 0; i < expected.second.size(); ++i) EXPECT_FLOAT_EQ(fast.at(id).second[i], expected.second[i]) << id;
    for (float lp : fast.at(id).second) EXPECT_TRUE(std::isfinite(lp)) << id;
  }
  // Every row of the two greedy requests and min-tokens' rows from its 6th token on went the
  // fast way; the logprobs, penalty and sampled requests' rows never did (they would read NaN).
  const int expected_fast = int(reference.at("greedy-a").first.size() + reference.at("greedy-b").first.size()) +
                            std::max(0, int(reference.at("min-tokens").first.size()) - 5);
  EXPECT_GT(expected_fast, 0);
  EXPECT_EQ(observed->argmax_only_rows, expected_fast);
}

}  // namespace
}  // namespace moeserve

// The engine's token-choice protocol (Runner::picks_tokens, as every runner implements it):
// every sampling request whose logits row the engine does not need hands the runner a
// TokenChoice — params, masks and penalties as edits, the step's draw from the request's
// generator, how many logprobs — and takes the token (and logprobs) the runner picked; requests
// with logprobs over an edited row (penalties, min_tokens) still sample from the row on the host.
// Checked on the CPU runner, which picks on the host (TokenPicker), with the rows it was told
// nobody reads poisoned: every output (greedy, seeded sampling, penalties, min_tokens, logprobs
// with their top alternatives) must equal the engine sampling every row itself.
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

// A runner over another: everything but what the two below change is passed through.
class WrappingRunner : public Runner {
 public:
  explicit WrappingRunner(std::unique_ptr<Runner> inner) : inner_(std::move(inner)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  int num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  int block_size() const override { return inner_->block_size(); }
  size_t kv_memory_bytes() const override { return inner_->kv_memory_bytes(); }
  const ExpertLoad& expert_load() const override { return inner_->expert_load(); }
  void reset_expert_load() override { inner_->reset_expert_load(); }

 protected:
  std::unique_ptr<Runner> inner_;
};

// The reference: the same CPU runner with the engine sampling every token from its logits rows
// (a runner that does not pick tokens is never handed a choice).
class EngineSamplesRunner final : public WrappingRunner {
 public:
  using WrappingRunner::WrappingRunner;
  Tensor execute(std::span<const RunnerSeq> seqs) override {
    for (const RunnerSeq& seq : seqs) EXPECT_EQ(seq.choice, nullptr);
    return inner_->execute(seqs);
  }
};

// The subject: the CPU runner picking tokens itself (TokenPicker), observed — which rows it was
// handed a choice for — and with those rows poisoned afterwards, since nobody may read them.
class ObservedPickingRunner final : public WrappingRunner {
 public:
  explicit ObservedPickingRunner(std::unique_ptr<Runner> inner) : WrappingRunner(std::move(inner)) {
    EXPECT_TRUE(inner_->picks_tokens());
  }
  bool picks_tokens() const override { return true; }
  std::span<const int32_t> picked_tokens() const override { return inner_->picked_tokens(); }
  int max_picked_logprobs() const override { return inner_->max_picked_logprobs(); }
  std::span<const TokenLogprob> picked_logprobs() const override { return inner_->picked_logprobs(); }

  Tensor execute(std::span<const RunnerSeq> seqs) override {
    Tensor logits = inner_->execute(seqs);
    const int vocab = config().vocab_size;
    int row = 0;
    for (const RunnerSeq& seq : seqs) {
      const int rows = seq.all_logits ? seq.num_new : (seq.samples ? 1 : 0);
      for (int r = 0; r < rows; ++r, ++row) {
        if (seq.choice == nullptr) continue;
        ++(seq.choice->argmax_only() ? argmax_rows : sampled_rows);
        if (seq.choice->logprobs >= 0) {
          EXPECT_TRUE(seq.choice->edits.empty());  // logprobs of edited rows stay with the engine
          ++logprobs_rows;
        }
        float* values = logits.f32() + int64_t(row) * vocab;
        std::fill(values, values + vocab, std::numeric_limits<float>::quiet_NaN());
      }
    }
    return logits;
  }

  int argmax_rows = 0;    // rows picked by the plain argmax
  int sampled_rows = 0;   // rows picked after edits, by a draw or with logprobs
  int logprobs_rows = 0;  // of those, rows with logprobs
};

std::unique_ptr<Runner> cpu_runner() {
  auto loaded = load_model(kModel, LoadOptions{});
  MS_CHECK(loaded.ok());
  auto runner = make_cpu_runner(std::move(*loaded), {.num_kv_blocks = 64, .block_size = 16, .threads = 2});
  MS_CHECK(runner.ok());
  return std::move(runner.value());
}

std::vector<GenerationRequest> requests() {
  std::vector<GenerationRequest> out;
  auto add = [&](const std::string& id, std::vector<int32_t> prompt, auto&& tweak) {
    GenerationRequest request;
    request.request_id = id;
    request.prompt_ids = std::move(prompt);
    request.sampling.temperature = 0.0f;
    request.stop.max_tokens = 12;
    tweak(request);
    out.push_back(std::move(request));
  };
  add("greedy-a", {1, 415, 6509, 28705}, [](GenerationRequest&) {});
  add("greedy-b", {1, 560, 272, 5398, 403}, [](GenerationRequest&) {});
  add("min-tokens", {1, 415, 6509}, [](GenerationRequest& r) { r.stop.min_tokens = 5; });
  add("logprobs", {1, 560, 272}, [](GenerationRequest& r) { r.logprobs = 2; });
  add("logprobs-sampled", {1, 415, 272}, [](GenerationRequest& r) {
    r.logprobs = 5;
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = 3;
  });
  add("logprobs-penalty", {1, 560, 6509}, [](GenerationRequest& r) {
    r.logprobs = 1;
    r.sampling.presence_penalty = 0.4f;
  });
  add("penalty", {1, 415, 6509, 28705}, [](GenerationRequest& r) { r.sampling.repetition_penalty = 1.3f; });
  add("sampled", {1, 560, 272, 5398}, [](GenerationRequest& r) {
    r.sampling.temperature = 0.8f;
    r.sampling.seed = 11;
  });
  add("filtered", {1, 415, 6509, 28705, 560}, [](GenerationRequest& r) {
    r.sampling = {.temperature = 1.1f,
                  .top_p = 0.9f,
                  .top_k = 20,
                  .min_p = 0.05f,
                  .presence_penalty = 0.5f,
                  .frequency_penalty = 0.3f,
                  .seed = 5};
  });
  return out;
}

// Every request's generated ids (and logprobs), all submitted at once so they share steps.
std::map<std::string, std::pair<std::vector<int32_t>, std::vector<float>>> run(std::unique_ptr<Runner> runner) {
  EngineConfig config;
  config.scheduler.max_model_len = 128;
  config.eos_token_ids = {2};  // the model's, so min_tokens masks it
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
                       for (const TokenLogprob& lp : output.new_logprobs) {
                         logprobs.push_back(lp.logprob);
                         for (const auto& [top_id, top_logprob] : lp.top) {
                           logprobs.push_back(static_cast<float>(top_id));
                           logprobs.push_back(top_logprob);
                         }
                       }
                       if (output.finished) finished->set_value();
                     }).ok());
  }
  (*engine)->start();
  for (auto& promise : done) promise.get_future().wait();
  (*engine)->stop();
  return got;
}

TEST(EngineTokenChoice, TheRunnerPicksEveryTokenButLogprobsAndOutputsStayTheSame) {
  const auto reference = run(std::make_unique<EngineSamplesRunner>(cpu_runner()));
  auto picking_runner = std::make_unique<ObservedPickingRunner>(cpu_runner());
  ObservedPickingRunner* observed = picking_runner.get();
  const auto picked = run(std::move(picking_runner));
  ASSERT_EQ(picked.size(), reference.size());
  for (const auto& [id, expected] : reference) {
    EXPECT_EQ(picked.at(id).first, expected.first) << id;
    ASSERT_EQ(picked.at(id).second.size(), expected.second.size()) << id;
    for (size_t i = 0; i < expected.second.size(); ++i)
      EXPECT_FLOAT_EQ(picked.at(id).second[i], expected.second[i]) << id;
    for (float lp : picked.at(id).second) EXPECT_TRUE(std::isfinite(lp)) << id;
  }
  // The two greedy requests and min-tokens' rows from its 6th token on are plain argmax rows;
  // min-tokens' first 5, the penalty, sampled, filtered and both unedited logprobs requests'
  // rows are picked after edits, by a draw or with logprobs; of logprobs-penalty's rows only the
  // first does (presence counts output tokens: no edits yet), the others would read NaN.
  auto tokens = [&](const std::string& id) { return int(reference.at(id).first.size()); };
  const int min_tokens_masked = std::min(5, tokens("min-tokens"));
  EXPECT_GT(tokens("sampled"), 0);
  EXPECT_EQ(observed->argmax_rows, tokens("greedy-a") + tokens("greedy-b") + tokens("min-tokens") - min_tokens_masked);
  EXPECT_GT(tokens("logprobs-penalty"), 1);
  EXPECT_EQ(observed->sampled_rows, min_tokens_masked + tokens("penalty") + tokens("sampled") + tokens("filtered") +
                                        tokens("logprobs") + tokens("logprobs-sampled") + 1);
  EXPECT_EQ(observed->logprobs_rows, tokens("logprobs") + tokens("logprobs-sampled") + 1);
}

}  // namespace
}  // namespace moeserve

// `moeserve generate MODEL_DIR (--ids 1,2,3 | --prompt TEXT) --max-tokens N --temperature T
// [--ignore-eos] [--json]`: one sequence, greedy when T = 0. --json prints one line
// {"prompt_ids": [...], "output_ids": [...], "text": "..."} (text when the model has a tokenizer).
#include <cstdio>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/flag_checks.h"
#include "runtime/make_runner.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace moeserve::cli {

namespace {

struct GenerateArgs {
  EngineFlags engine;
  std::string ids;
  std::string prompt;
  int max_tokens = 16;
  SamplingParams sampling;
  bool ignore_eos = false;
  bool json = false;
};

std::shared_ptr<const Tokenizer> load_tokenizer_or_fail(const std::string& dir, bool required) {
  if (!std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
    if (required) fail(dir + " has no tokenizer.json: use --ids instead of --prompt");
    return nullptr;
  }
  auto tokenizer = Tokenizer::from_dir(dir);
  if (!tokenizer.ok()) fail(tokenizer.error().message);
  return *tokenizer;
}

void run_generate(GenerateArgs& args) {
  if (args.ids.empty() == args.prompt.empty()) fail("give exactly one of --ids and --prompt");
  if (args.max_tokens <= 0) fail("--max-tokens must be positive");
  const auto tokenizer = load_tokenizer_or_fail(args.engine.model_dir, !args.prompt.empty());

  std::vector<int32_t> prompt_ids;
  if (!args.prompt.empty()) {
    auto encoded = tokenizer->encode(args.prompt, /*add_special_tokens=*/true);
    if (!encoded.ok()) fail(encoded.error().message);
    prompt_ids = *encoded;
  } else {
    auto parsed = parse_id_list(args.ids);
    if (!parsed.ok()) fail(parsed.error().message);
    prompt_ids = *parsed;
  }
  auto spec = args.engine.runner_spec();  // config.json, read once
  if (!spec.ok()) fail(spec.error().message);
  auto backend = make_sequence_backend(*spec, static_cast<int>(prompt_ids.size()) + args.max_tokens);
  if (!backend.ok()) fail(backend.error().message);
  const ModelConfig& config = (*backend)->config();
  const std::vector<int32_t> eos_ids = load_eos_token_ids(args.engine.model_dir, config);
  SequenceRunner& runner = (*backend)->runner();
  if (!args.sampling.seed) args.sampling.seed = args.engine.seed;
  std::mt19937_64 rng(*args.sampling.seed);

  std::vector<int32_t> output_ids;
  auto logits = runner.append(prompt_ids, /*all_logits=*/false);
  while (true) {
    if (!logits.ok()) fail(logits.error().message);
    std::span<float> row(logits->f32(), config.vocab_size);
    apply_edits(row, args.sampling, logit_edits(args.sampling, config.vocab_size, prompt_ids, output_ids));
    const int32_t token = sample_token(row, args.sampling, rng);
    output_ids.push_back(token);
    const bool is_eos = std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end();
    if ((is_eos && !args.ignore_eos) || static_cast<int>(output_ids.size()) >= args.max_tokens) break;
    logits = runner.append(std::span<const int32_t>(&output_ids.back(), 1), false);
  }

  // Decoded in the prompt's context, so the first word keeps its leading space.
  std::string text;
  if (tokenizer) {
    IncrementalDetokenizer detokenizer(tokenizer, prompt_ids, /*skip_special_tokens=*/true);
    for (int32_t id : output_ids) text += detokenizer.push(id);
    text += detokenizer.finish();
  }
  if (args.json) {
    nlohmann::json out = {{"prompt_ids", prompt_ids}, {"output_ids", output_ids}};
    if (tokenizer) out["text"] = text;
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else if (tokenizer) {
    std::printf("%s%s\n", args.prompt.c_str(), text.c_str());
  } else {
    std::printf("%s\n", nlohmann::json(output_ids).dump().c_str());
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* command = app.add_subcommand("generate", "Generate a continuation of one prompt");
  args->engine.add_to(*command, /*with_parallel=*/true);
  command->add_option("--ids", args->ids, "Prompt as comma-separated token ids (used as given)");
  command->add_option("--prompt", args->prompt, "Prompt text (tokenized with the model's tokenizer, BOS added)");
  command->add_option("--max-tokens", args->max_tokens, "Tokens to generate");
  command->add_option("--temperature", args->sampling.temperature, "0 = greedy")->check(non_negative_number());
  command->add_option("--top-p", args->sampling.top_p)->check(CLI::Range(0.0f, 1.0f));
  command->add_option("--top-k", args->sampling.top_k);
  command->add_option("--min-p", args->sampling.min_p)->check(CLI::Range(0.0f, 1.0f));
  command->add_flag("--ignore-eos", args->ignore_eos, "Keep generating past the EOS token");
  command->add_flag("--json", args->json, "Print one JSON line with prompt_ids, output_ids and text");
  command->callback([args] { run_generate(*args); });
}

}  // namespace moeserve::cli

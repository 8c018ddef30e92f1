// `moeserve logits MODEL_DIR --ids 5,7,9 --out FILE.safetensors`: runs the ids (no BOS added)
// and writes tensor `logits` (float32 [T, vocab]) — the command golden comparisons use.
#include <memory>

#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/sequence_backend.h"
#include "loader/safetensors.h"
#ifdef MOESERVE_HAVE_CUDA
#include "runtime/cuda/cuda_runner.h"
#endif

namespace moeserve::cli {

namespace {

struct LogitsArgs {
  EngineFlags engine;
  std::string ids;
  std::string out;
};

void run_logits(const LogitsArgs& args) {
  auto ids = parse_id_list(args.ids);
  if (!ids.ok()) fail(ids.error().message);
  auto options = args.engine.load_options();
  if (!options.ok()) fail(options.error().message);
  if (args.engine.device == "cuda") {
    if (auto parallel = args.engine.parallel_config(); !parallel.ok()) fail(parallel.error().message);
#ifdef MOESERVE_HAVE_CUDA
    auto runner = make_cuda_runner(args.engine.model_dir, *options, CudaRunnerOptions{});
    if (!runner.ok()) fail(runner.error().message);
    const int vocab = (*runner)->config().vocab_size;
    for (int32_t id : *ids) {
      if (id < 0 || id >= vocab) fail(fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab));
    }
    const int blocks = (static_cast<int>(ids->size()) + (*runner)->block_size() - 1) / (*runner)->block_size();
    if (blocks > (*runner)->num_kv_blocks()) fail("the sequence does not fit the GPU's KV cache");
    std::vector<int32_t> table(blocks);
    for (int b = 0; b < blocks; ++b) table[b] = b;
    const RunnerSeq seq{.tokens = *ids, .num_computed = 0, .num_new = static_cast<int>(ids->size()),
                        .samples = true, .all_logits = true, .block_table = table};
    const Tensor logits = (*runner)->execute(std::span<const RunnerSeq>(&seq, 1));
    auto status = write_safetensors(args.out, {{"logits", logits.view()}});
    if (!status.ok()) fail(status.error().message);
    return;
#else
    fail("this moeserve was built without CUDA (no nvcc found)");
#endif
  }
  auto backend = SequenceBackend::create(args.engine, static_cast<int>(ids->size()));
  if (!backend.ok()) fail(backend.error().message);
  auto logits = (*backend)->runner().append(*ids, /*all_logits=*/true);
  if (!logits.ok()) fail(logits.error().message);
  auto status = write_safetensors(args.out, {{"logits", logits->view()}});
  if (!status.ok()) fail(status.error().message);
}

}  // namespace

void add_logits_command(CLI::App& app) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* command = app.add_subcommand("logits", "Write the logits of a token sequence to a safetensors file");
  args->engine.add_to(*command, /*with_parallel=*/true);
  command->add_option("--ids", args->ids, "Comma-separated token ids (no BOS is added)")->required();
  command->add_option("--out", args->out, "Output .safetensors file (tensor 'logits', float32 [T, vocab])")->required();
  command->callback([args] { run_logits(*args); });
}

}  // namespace moeserve::cli

// `moeserve logits MODEL_DIR --ids 5,7,9 --out FILE.safetensors`: runs the ids (no BOS added)
// and writes tensor `logits` (float32 [T, vocab]) — the command golden comparisons use.
#include <memory>

#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "loader/safetensors.h"
#include "runtime/make_runner.h"

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
  auto spec = args.engine.runner_spec();  // config.json, read once
  if (!spec.ok()) fail(spec.error().message);
  auto backend = make_sequence_backend(*spec, static_cast<int>(ids->size()));
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

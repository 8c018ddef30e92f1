// `moeserve serve MODEL_DIR [flags]`: the OpenAI-compatible server over the engine, with vLLM's
// flag names. Before any weight is loaded the memory model decides whether the deployment fits
// (cli/engine_setup.h); then the model, the engine loop and the HTTP server start, and
// SIGINT/SIGTERM shut the server down gracefully (HttpServer::stop_on_signals, --shutdown-timeout)
// and exit 0. A vLLM flag moeserve does not
// implement yet is refused by name, never ignored.
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/engine_setup.h"
#include "server/http_server.h"
#include "server/prometheus_engine_metrics.h"
#include "server/prometheus_ep_metrics.h"

namespace moeserve::cli {

namespace {

struct ServeArgs {
  EngineFlags engine;
  ServeFlags serve;
};

void run_serve(ServeArgs& args, const std::vector<std::string>& extras) {
  if (auto refused = refuse_unsupported_flags(extras); !refused.ok()) fail(refused.error().message);
  ServerOptions server_options = args.serve.server_options(args.engine.model_id);
  auto setup = create_engine(args.engine, args.serve.scheduling);
  if (!setup.ok()) fail(setup.error().message);
  EngineClient& engine = setup->client();
  MetricsRegistry registry;
  PrometheusEngineMetrics metrics(registry, server_options.served_model_names.front(), engine.info().max_model_len);
  setup->set_metrics(&metrics);
  if (setup->rank_group && setup->rank_group->parallel().uses_expert_parallel()) {
    register_ep_metrics(registry, setup->rank_group, server_options.served_model_names.front());
  }
  server_options.sampling_defaults = setup->generation.sampling;
  setup->start();

  HttpServer server(server_options, engine, registry);
  if (auto started = server.start(); !started.ok()) fail(started.error().message);
  server.stop_on_signals();
  spdlog::info("serving {} on http://{}:{} (OpenAI API under /v1)", server_options.served_model_names.front(),
               server_options.host, server.port());
  server.run();
  setup->stop();
  spdlog::info("stopped");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* command = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  args->engine.add_to(*command, /*with_parallel=*/true);
  args->serve.add_to(*command);
  command->allow_extras();
  command->callback([args, command] { run_serve(*args, command->remaining()); });
}

}  // namespace moeserve::cli

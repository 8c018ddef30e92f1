// `moeserve serve MODEL_DIR [flags]`: the OpenAI-compatible server over the engine, with vLLM's
// flag names. Before any weight is loaded the memory model decides whether the deployment fits
// (cli/engine_setup.h); then the model, the engine loop and the HTTP server start, and
// SIGINT/SIGTERM shut the server down gracefully (HttpServer::stop_on_signals, --shutdown-timeout)
// and exit 0. A vLLM flag moeserve does not
// implement yet is refused by name, never ignored.
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>

#include <spdlog/spdlog.h>

#include "apiserver/api_servers.h"
#include "cli/commands.h"
#include "cli/engine_setup.h"
#include "cli/multi_node_flags.h"
#include "model/config.h"
#include "plan/memory_model.h"
#include "runtime/engine_failure.h"
#include "runtime/headless_node.h"
#include "server/http_server.h"
#include "server/live_stats.h"
#include "server/prometheus_engine_metrics.h"
#include "server/prometheus_ep_metrics.h"

namespace moeserve::cli {

namespace {

struct ServeArgs {
  EngineFlags engine;
  ServeFlags serve;
  MultiNodeFlags multi_node;
};

// The live page's deployment panel: what the startup log says, as one JSON object.
Json deployment_json(const ServeArgs& args, const EngineSetup& setup, const EngineInfo& info,
                     const std::string& served_name) {
  const ModelConfig& model = *info.model_config;
  const EngineConfig& engine = setup.engine_config;
  Json out;
  out["served_model_name"] = served_name;
  out["model"] = info.model_dir;
  out["architecture"] = model.architecture_name;
  out["layers"] = model.num_layers;
  if (model.moe) {
    out["experts"] = model.moe->num_experts;
    out["experts_per_token"] = model.moe->top_k;
  }
  const plan::MemoryModel memory(model);
  out["parameters"] = fmt::format("{:.4f}B", memory.params().total / 1e9);
  out["active_parameters"] = fmt::format("{:.4f}B", memory.params().active / 1e9);
  out["weights_dtype"] = std::string(dtype_name(model.dtype));
  out["compute_dtype"] = args.engine.dtype;
  out["backend"] = fmt::format("{} ({})", backend_name(setup.backend.backend), setup.backend.reason);
  out["layout"] = setup.layout;
  out["plan"] = setup.plan;
  const int replicas = setup.data_parallel ? setup.data_parallel->num_replicas() : 1;
  out["kv_cache"] = fmt::format("{} blocks x {} tokens = {} tokens{}; prefix caching {}", setup.num_kv_blocks,
                                setup.block_size, int64_t{setup.num_kv_blocks} * setup.block_size,
                                replicas > 1 ? fmt::format(" per DP replica ({} replicas)", replicas) : "",
                                engine.enable_prefix_caching ? "on" : "off");
  out["scheduler"] = fmt::format("max_model_len {}, max_num_seqs {}, max_num_batched_tokens {}",
                                 engine.scheduler.max_model_len, engine.scheduler.max_num_seqs,
                                 engine.scheduler.max_num_batched_tokens);
  if (args.engine.enable_eplb) out["eplb"] = args.engine.eplb_config;
  out["version"] = MOESERVE_VERSION;
  return out;
}

// --headless: this node's DP ranks for a leader elsewhere; no HTTP server, no engine here.
void run_headless(const ServeArgs& args) {
  auto parallel = args.engine.parallel_config();
  if (!parallel.ok()) fail(parallel.error().message);
  // The refusals of the leader's backend choice (--dtype float16 on cuda, a build without CUDA).
  auto device = parse_device(args.engine.device);
  if (!device.ok()) fail(device.error().message);
  auto load = args.engine.load_options();
  if (!load.ok()) fail(load.error().message);
  if (auto backend = choose_backend(*device, load->dtype); !backend.ok()) fail(backend.error().message);
  auto status = run_headless_node(args.engine.model_dir, *parallel);
  if (!status.ok()) fail(status.error().message);
  if (*status != 0) throw CLI::RuntimeError(*status);
}

// --api-server-count N > 1: the engine here, N API-server processes in front of it
// (apiserver/api_servers.h); the engine's metrics and live counters stay in this process and
// travel to the API servers over the engine channel.
void serve_with_api_server_processes(const ServeArgs& args, EngineSetup& setup, int count, ServerOptions options,
                                     MetricsRegistry& registry, std::shared_ptr<LiveStats> live_stats,
                                     LiveSources live) {
  EngineClient& engine = setup.client();
  ApiServersSetup api;
  api.count = count;
  api.options = std::move(options);
  api.tokenizer_dir = args.serve.scheduling.tokenizer.empty() ? engine.info().model_dir
                                                              : args.serve.scheduling.tokenizer;
  api.deployment = live.deployment;
  api.registry = &registry;
  if (api.options.enable_webui) {
    api.live_stats = live_stats;
    api.ep_stats = live.ep_stats;
  }
  Result<int> status = serve_with_api_servers(engine, std::move(api));
  setup.stop();
  if (!status.ok()) fail(status.error().message);
  if (*status != 0) throw CLI::RuntimeError(*status);
  spdlog::info("stopped");
}

void run_serve(ServeArgs& args, const std::vector<std::string>& extras) {
  if (auto refused = refuse_unsupported_flags(extras); !refused.ok()) fail(refused.error().message);
  if (auto checked = args.serve.check(); !checked.ok()) fail(checked.error().message);
  auto nodes = args.multi_node.config();
  if (!nodes.ok()) fail(nodes.error().message);
  args.engine.nodes = *nodes;
  if (nodes->headless) return run_headless(args);
  const int api_servers = args.multi_node.api_servers();
  if (api_servers > 1 && !api_servers_built()) {
    fail(fmt::format("--api-server-count {}: this moeserve was built without ZeroMQ (apt-get install libzmq3-dev "
                     "cppzmq-dev, then rebuild); use --api-server-count 1",
                     api_servers));
  }
  ServerOptions server_options = args.serve.server_options(args.engine.model_id);
  auto setup = create_engine(args.engine, args.serve.scheduling);
  if (!setup.ok()) fail(setup.error().message);
  EngineClient& engine = setup->client();
  MetricsRegistry registry;
  PrometheusEngineMetrics metrics(registry, server_options.served_model_names.front(), engine.info().max_model_len);
  // The live page's counters see the same steps as /metrics (only with the page on).
  auto live_stats = std::make_shared<LiveStats>();
  EngineMetricsTee both({&metrics, live_stats.get()});
  setup->set_metrics(server_options.enable_webui ? static_cast<EngineMetrics*>(&both) : &metrics);
  LiveSources live;
  live.stats = live_stats;
  live.deployment = deployment_json(args, *setup, engine.info(), server_options.served_model_names.front());
  if (setup->rank_group && setup->rank_group->parallel().uses_expert_parallel()) {
    register_ep_metrics(registry, setup->rank_group, server_options.served_model_names.front());
    live.ep_stats = [group = setup->rank_group]() -> std::optional<EpStats> { return group->ep_stats(); };
  }
  server_options.sampling_defaults = setup->generation.sampling;
  setup->start();
  if (api_servers > 1)
    return serve_with_api_server_processes(args, *setup, api_servers, std::move(server_options), registry, live_stats,
                                           std::move(live));

  HttpServer server(server_options, engine, registry, std::move(live));
  if (auto started = server.start(); !started.ok()) fail(started.error().message);
  server.stop_on_signals();
  set_engine_failure_handler([&server](const std::string& reason) { server.end_for_engine_failure(reason); });
  spdlog::info("serving {} on http://{}:{} (OpenAI API under /v1{})", server_options.served_model_names.front(),
               server_options.host, server.port(), server_options.enable_webui ? ", live page at /" : "");
  server.run();
  if (const auto failure = engine_failure()) {
    // The requests in flight have had their 503; the engine thread is stuck in the failed step.
    spdlog::critical("the engine failed ({}): exiting with status 1", *failure);
    spdlog::default_logger()->flush();
    std::_Exit(1);
  }
  set_engine_failure_handler(nullptr);
  setup->stop();
  spdlog::info("stopped");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* command = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  args->engine.add_to(*command, /*with_parallel=*/true);
  args->serve.add_to(*command);
  args->multi_node.add_to(*command);
  command->allow_extras();
  command->callback([args, command] { run_serve(*args, command->remaining()); });
}

}  // namespace moeserve::cli

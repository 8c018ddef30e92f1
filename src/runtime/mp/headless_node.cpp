// A --headless node: joins the leader's deployment and runs its DP ranks' workers
// (runtime/headless_node.h).
#include "runtime/headless_node.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "base/text_file.h"
#include "comm/communicator.h"
#include "comm/gloo/tcp_store.h"
#include "runtime/make_runner.h"
#include "runtime/mp/worker_spec.h"

namespace moeserve {

namespace {

using mp::Json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How often the node asks the leader whether it is still there, and how long an answer may take.
constexpr auto kLivenessInterval = 1s;
constexpr std::chrono::milliseconds kLivenessTimeout{10'000};
// How long the workers get to leave on their own once the leader has gone (it may have told
// them to quit just before).
constexpr auto kQuitGrace = 2s;

std::string text_of(const std::vector<char>& bytes) { return std::string(bytes.begin(), bytes.end()); }

// The layout fields both nodes must agree on (every field of the workers' layout but the threads).
Json layout_of(Json parallel) {
  parallel.erase("threads_per_rank");
  return parallel;
}

// The leader's deployment, checked against this node's flags and model.
Result<Json> read_deployment(TcpStore& store, const std::string& model_dir, const ParallelConfig& parallel) {
  const MultiNodeConfig& nodes = parallel.nodes;
  Json spec;
  try {
    spec = Json::parse(text_of(store.get("mp/spec")));
  } catch (const CommError& error) {
    return make_error("--headless: the leader at {}:{} published no deployment for other nodes within {} s (does it "
                      "run with --data-parallel-size-local below --data-parallel-size?): {}",
                      nodes.address, nodes.rpc_port, nodes.ready_timeout.count() / 1000, error.what());
  } catch (const std::exception& error) {
    return make_error("--headless: the leader at {}:{} published an unreadable deployment: {}", nodes.address,
                      nodes.rpc_port, error.what());
  }
  const Json mine = layout_of(mp::parallel_json(parallel));
  const Json leaders = layout_of(spec.at("parallel"));
  if (mine != leaders) {
    return make_error("--headless: this node's layout {} is not the leader's {}: start every node with the same "
                      "-tp, -dp, --enable-expert-parallel, --all2all-backend, --expert-placement-strategy and "
                      "--eplb-config",
                      mine.dump(), leaders.dump());
  }
  auto config_text = read_text_file(model_dir + "/config.json");
  if (config_text.ok() && spec.contains("config_json")) {
    const Json here = Json::parse(*config_text, nullptr, /*allow_exceptions=*/false);
    const Json there = Json::parse(spec.at("config_json").get<std::string>(), nullptr, /*allow_exceptions=*/false);
    if (here != there) {
      return make_error("--headless: {}/config.json is not the leader's model's config.json: every node serves the "
                        "same model",
                        model_dir);
    }
  }
  return spec;
}

// This node's share of the deployment in its host's memory, as the leader checks its own: the
// leader's KV blocks per replica and the weight copies of this node's replicas.
Status check_node_memory(const std::string& model_dir, const ParallelConfig& parallel, const Json& spec) {
  const LoadOptions load = mp::load_options_from(spec.at("load"));
  MS_ASSIGN_OR_RETURN(const ModelConfig config, load_model_config(model_dir, load.hf_overrides));
  const plan::MemoryModel memory(config);
  MS_ASSIGN_OR_RETURN(const CpuNodeMemory node,
                      check_cpu_node_fits_host(config, load, memory, parallel, spec.at("num_blocks").get<int64_t>(),
                                               spec.at("block_size").get<int>(), plan::read_host_memory()));
  spdlog::info("--headless: this node's ranks fit: {:.3f} GiB of {} weights and {:.3f} GiB of KV cache",
               node.weight_bytes / double(1 << 30), node.held_name, node.kv_bytes / double(1 << 30));
  return ok_status();
}

void kill_all(std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    if (pid > 0) kill(pid, SIGKILL);
  }
  for (pid_t& pid : pids) {
    if (pid > 0) waitpid(pid, nullptr, 0);
    pid = -1;
  }
}

// Waits up to kQuitGrace for every worker to exit with status 0 (told to quit by the leader).
bool workers_quit(std::vector<pid_t>& pids) {
  const auto deadline = Clock::now() + kQuitGrace;
  for (pid_t& pid : pids) {
    while (pid > 0) {
      int status = 0;
      const pid_t done = waitpid(pid, &status, WNOHANG);
      if (done == pid) {
        pid = -1;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return false;
      } else if (Clock::now() > deadline) {
        return false;
      } else {
        std::this_thread::sleep_for(20ms);
      }
    }
  }
  return true;
}

}  // namespace

Result<int> run_headless_node(const std::string& model_dir, const ParallelConfig& parallel) {
  const MultiNodeConfig& nodes = parallel.nodes;
  const int dp = parallel.data_parallel_size, tp = parallel.tensor_parallel_size;
  const int first_rank = nodes.first_local() * tp;
  const int end_rank = (nodes.first_local() + nodes.local_replicas(dp)) * tp;
  const std::string leader = fmt::format("{}:{}", nodes.address, nodes.rpc_port);
  spdlog::info("--headless: DP ranks {}-{} of {} (ranks {}-{}); joining the leader at {} (waiting up to {} s, "
               "VLLM_ENGINE_READY_TIMEOUT_S)",
               nodes.first_local(), nodes.first_local() + nodes.local_replicas(dp) - 1, dp, first_rank, end_rank - 1,
               leader, nodes.ready_timeout.count() / 1000);
  auto store = TcpStore::connect(
      TcpStoreOptions{.address = nodes.address, .port = nodes.rpc_port, .timeout = nodes.ready_timeout});
  if (!store.ok()) {
    return make_error("--headless: the leader did not appear at {} within {} s ({}): start `moeserve serve` without "
                      "--headless on the leader's node, with the same --data-parallel-address and "
                      "--data-parallel-rpc-port",
                      leader, nodes.ready_timeout.count() / 1000, store.error().message);
  }
  MS_ASSIGN_OR_RETURN(const Json spec, read_deployment(**store, model_dir, parallel));
  // CUDA ranks ("cuda" in the spec) size themselves on their GPUs, with the leader.
  if (Status fits = spec.contains("cuda") ? ok_status() : check_node_memory(model_dir, parallel, spec); !fits.ok()) {
    return fits.error().with_context("--headless: this node cannot hold its DP ranks");
  }
  // A second connection with a short limit, only to ask whether the leader is still there.
  auto liveness =
      TcpStore::connect(TcpStoreOptions{.address = nodes.address, .port = nodes.rpc_port, .timeout = kLivenessTimeout});
  if (!liveness.ok()) return liveness.error().with_context("--headless");
  std::vector<pid_t> pids;
  try {
    for (int rank = first_rank; rank < end_rank; ++rank) {
      const std::string claim = fmt::format("mp/claimed/{}", rank);
      if ((*store)->check(claim)) {
        kill_all(pids);
        return make_error("--headless: rank {} (DP rank {}) already runs on another node: give each node its own "
                          "--data-parallel-start-rank",
                          rank, rank / tp);
      }
      (*store)->set(claim, {'1'});
      Json worker = spec;
      worker["rank"] = rank;
      worker["endpoint"] = text_of((*store)->get(fmt::format("mp/endpoint/{}", rank)));
      worker["model_dir"] = model_dir;
      worker["parent"] = static_cast<int64_t>(getpid());
      worker["log_level"] = static_cast<int>(spdlog::get_level());
      worker["parallel"]["threads_per_rank"] = parallel.threads_per_rank;
      auto pid = mp::spawn_worker(worker);
      if (!pid.ok()) {
        kill_all(pids);
        return pid.error();
      }
      pids.push_back(*pid);
    }
  } catch (const CommError& error) {
    kill_all(pids);
    return make_error("--headless: lost the leader at {} while joining: {}", leader, error.what());
  }
  spdlog::info("--headless: started {} rank workers (pids {}), loading their shards from {}", pids.size(),
               fmt::join(pids, ", "), model_dir);
  auto next_check = Clock::now() + kLivenessInterval;
  for (;;) {
    int running = 0;
    for (size_t i = 0; i < pids.size(); ++i) {
      if (pids[i] <= 0) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) != pids[i]) {
        ++running;
        continue;
      }
      const pid_t was = pids[i];
      pids[i] = -1;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;  // the leader told it to quit
      spdlog::critical("--headless: rank {}'s worker (pid {}) {}; this node cannot go on, ending its other workers",
                       first_rank + static_cast<int>(i), was, mp::describe_status(status));
      kill_all(pids);
      return 1;
    }
    if (running == 0) {
      spdlog::info("--headless: the leader ended the deployment; exiting");
      return 0;
    }
    if (Clock::now() >= next_check) {
      try {
        (void)(*liveness)->check("mp/spec");
      } catch (const CommError& error) {
        if (workers_quit(pids)) {
          spdlog::info("--headless: the leader ended the deployment; exiting");
          return 0;
        }
        spdlog::critical("--headless: lost the leader at {} ({}); ending this node's workers", leader, error.what());
        kill_all(pids);
        return 1;
      }
      next_check = Clock::now() + kLivenessInterval;
    }
    std::this_thread::sleep_for(100ms);
  }
}

}  // namespace moeserve

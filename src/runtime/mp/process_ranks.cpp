// The mp executor: the engine's side (ProcessRanks) and the worker's (run_rank_worker).
#include "runtime/process_ranks.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "comm/gloo/gloo_communicator.h"
#include "comm/gloo/tcp_store.h"
#include "model/config.h"
#include "base/text_file.h"
#include "runtime/engine_failure.h"
#include "runtime/mp/peer_monitor.h"
#include "runtime/mp/wire.h"
#include "runtime/mp/worker_spec.h"
#include "runtime/model_runner.h"

namespace moeserve {

namespace {

using mp::describe_status;
using mp::Json;
using mp::Writer;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How often the engine looks at its workers' processes while it waits for them.
constexpr auto kPollInterval = 100ms;
// How long the rendezvous of ranks that all run on this host may take.
constexpr std::chrono::milliseconds kLocalRendezvousTimeout{60'000};
// How long a quitting worker gets before it is killed (here) or taken for gone (another node).
constexpr auto kQuitGrace = 5s;
// How long after a worker of another node disconnected the engine waits for the reason it may
// have sent before it fails with the disconnect.
constexpr auto kReasonGrace = 500ms;

// A TCP port of 127.0.0.1 free now (the kernel's pick for a socket bound to port 0).
Result<int> free_loopback_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return make_error("socket: {}", strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = strerror(errno);
    close(fd);
    return make_error("finding a free port on 127.0.0.1: {}", why);
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

zmq::message_t make_message(Writer& writer) { return zmq::message_t(writer.bytes().data(), writer.bytes().size()); }

class ProcessRanks final : public RankExecutor {
 public:
  ~ProcessRanks() override {
    {
      std::lock_guard<std::mutex> lock(monitor_mutex_);
      stopping_ = true;
    }
    monitor_cv_.notify_all();
    if (monitor_.joinable()) monitor_.join();
    shutdown();
  }

  static Result<std::unique_ptr<ProcessRanks>> start(const std::string& model_dir, const LoadOptions& load,
                                                     const ParallelConfig& parallel, int num_blocks, int block_size,
                                                     const std::optional<cuda_backend::RunnerOptions>& cuda);
  int num_kv_blocks() const { return num_kv_blocks_; }

  void step(std::span<const std::vector<RunnerSeq>> batches, std::span<Tensor> logits,
            std::span<ExpertLoad> loads) override {
    const int tp = parallel_.tensor_parallel_size;
    for (int rank = 0; rank < world(); ++rank) {
      Writer out('S');
      mp::encode_batch(out, batches[rank / tp]);
      send(rank, out);
    }
    await_all('D', [&](int rank, mp::Reader& in) {
      if (rank % tp != 0) return;
      const int dp_rank = rank / tp;
      Tensor& out = logits[dp_rank];
      in.take(out.view().as<float>(), out.numel() * sizeof(float));
      ExpertLoad& load = loads[dp_rank];
      const auto counts = in.get_array<int64_t>();
      const auto slots = in.get_array<int64_t>();
      if (counts.size() != load.counts.size() || slots.size() != load.slot_counts.size()) {
        fail(fmt::format("rank {} returned an expert load of the wrong size", rank));
      }
      load.counts = counts;
      load.slot_counts = slots;
    });
  }

  void apply_placement(std::span<const int> moe_layers,
                       const std::vector<std::shared_ptr<const ExpertMap>>& new_maps) override {
    Writer out('P');
    out.put<uint32_t>(static_cast<uint32_t>(new_maps.size()));
    for (const auto& map : new_maps) out.put_array<int32_t>(map->phys2log);
    for (int rank = 0; rank < world(); ++rank) send(rank, out);
    await_all('K', [](int, mp::Reader&) {});
  }

  size_t kv_memory_bytes(int dp_rank) const override {
    size_t bytes = 0;
    const int tp = parallel_.tensor_parallel_size;
    for (int rank = dp_rank * tp; rank < (dp_rank + 1) * tp; ++rank) bytes += kv_bytes_[rank];
    return bytes;
  }
  const char* kind() const override { return "processes"; }

 private:
  int world() const { return parallel_.world_size(); }

  void send(int rank, Writer& out) {
    zmq::message_t message = make_message(out);
    if (!sockets_[rank].send(message, zmq::send_flags::dontwait)) {
      // A PAIR socket queues up to its high-water mark; a full queue means the worker is stuck.
      fail(fmt::format("{} does not take its messages", who(rank)));
    }
  }

  // Waits for message `tag` from every worker; on_reply reads its body. Anything else (an 'E', a
  // worker that exits) fails the group.
  void await_all(char tag, const std::function<void(int, mp::Reader&)>& on_reply) {
    std::vector<bool> got(world(), false);
    int missing = world();
    while (missing > 0) {
      std::vector<zmq::pollitem_t> items;
      for (int rank = 0; rank < world(); ++rank) {
        items.push_back({static_cast<void*>(sockets_[rank]), 0, ZMQ_POLLIN, 0});
      }
      zmq::poll(items.data(), items.size(), kPollInterval);
      for (int rank = 0; rank < world(); ++rank) {
        if (!(items[rank].revents & ZMQ_POLLIN)) continue;
        zmq::message_t message;
        if (!sockets_[rank].recv(message, zmq::recv_flags::dontwait)) continue;
        const char* data = static_cast<const char*>(message.data());
        if (message.size() == 0) fail(fmt::format("rank {} sent an empty message", rank));
        mp::Reader in(data + 1, message.size() - 1);
        if (data[0] == 'E') {
          check_workers();  // a rank that died is the cause; the others' errors are the effect
          fail(fmt::format("{} failed: {}", who(rank), std::string(data + 1, message.size() - 1)));
        }
        if (data[0] != tag || got[rank]) {
          fail(fmt::format("rank {} sent message '{}' while '{}' was awaited", rank, data[0], tag));
        }
        on_reply(rank, in);
        got[rank] = true;
        --missing;
      }
      check_workers();
    }
  }

  // Fails the group when a worker of this host has exited.
  void check_workers() {
    std::lock_guard<std::mutex> lock(reap_mutex_);
    for (int rank = 0; rank < world(); ++rank) {
      if (pids_[rank] <= 0) continue;
      int status = 0;
      const pid_t pid = waitpid(pids_[rank], &status, WNOHANG);
      if (pid == pids_[rank]) {
        const pid_t was = pids_[rank];
        pids_[rank] = -1;
        fail(fmt::format("rank {}'s worker (pid {}) {}", rank, was, describe_status(status)));
      }
    }
  }

  // Fails the group when a worker of another node has gone, or has not connected in time.
  void check_remote_workers() {
    const MultiNodeConfig& nodes = parallel_.nodes;
    for (int rank = 0; rank < world(); ++rank) {
      if (!monitors_[rank]) continue;
      mp::PeerMonitor& monitor = *monitors_[rank];
      monitor.update();
      const int dp_rank = rank / parallel_.tensor_parallel_size;
      // A worker that failed says why ('E') just before its connection closes: the engine thread
      // gets a moment to report that reason rather than the disconnect.
      if (monitor.gone() && gone_since_[rank] == Clock::time_point{}) gone_since_[rank] = Clock::now();
      if (monitor.gone() && Clock::now() - gone_since_[rank] > kReasonGrace) {
        fail(fmt::format("{} lost its connection: its process or its node went away, or stopped answering for {} s "
                         "(the --headless node running DP rank {} ends its other workers when one fails)",
                         who(rank), mp::PeerMonitor::kHeartbeatTimeout.count() / 1000, dp_rank));
      }
      if (!monitor.connected() && Clock::now() > connect_deadline_) {
        fail(fmt::format("{} did not connect within {} s (VLLM_ENGINE_READY_TIMEOUT_S): is the node with "
                         "--headless --data-parallel-start-rank {} (or less) running, with --data-parallel-address {} "
                         "--data-parallel-rpc-port {}?",
                         who(rank), nodes.ready_timeout.count() / 1000, dp_rank, nodes.rendezvous_address(),
                         nodes.rpc_port));
      }
    }
  }

  // "rank 1's worker (pid 123)", or "(on another node)".
  std::string who(int rank) const {
    if (monitors_[rank]) return fmt::format("rank {}'s worker (on another node)", rank);
    return fmt::format("rank {}'s worker (pid {})", rank, pids_[rank]);
  }

  // A rank failed: the group cannot go on (the other ranks would wait for it in their
  // collectives). Says why, ends the workers, then the process (fail_engine: serve first answers
  // the requests in flight and /health with 503). (The workers of other nodes are ended by their
  // node, which sees the rendezvous store close with this process.)
  [[noreturn]] void fail(const std::string& why) {
    spdlog::critical("--distributed-executor-backend mp: {}; the engine cannot go on, exiting", why);
    spdlog::default_logger()->flush();
    for (pid_t pid : pids_) {
      if (pid > 0) kill(pid, SIGKILL);
    }
    for (pid_t pid : pids_) {
      if (pid > 0) waitpid(pid, nullptr, 0);
    }
    fail_engine(why);
  }

  void shutdown() {
    for (int rank = 0; rank < static_cast<int>(sockets_.size()); ++rank) {
      const bool remote_alive = monitors_[rank] && monitors_[rank]->connected() && !monitors_[rank]->gone();
      if (pids_[rank] <= 0 && !remote_alive) continue;
      Writer out('Q');
      zmq::message_t message = make_message(out);
      (void)sockets_[rank].send(message, zmq::send_flags::dontwait);
    }
    // Up to kQuitGrace for the workers to leave: this host's are then killed; another node's
    // are left to their node.
    const auto deadline = Clock::now() + kQuitGrace;
    for (pid_t& pid : pids_) {
      if (pid <= 0) continue;
      while (waitpid(pid, nullptr, WNOHANG) == 0) {
        if (Clock::now() > deadline) {
          kill(pid, SIGKILL);
          waitpid(pid, nullptr, 0);
          break;
        }
        std::this_thread::sleep_for(10ms);
      }
      pid = -1;
    }
    for (auto& monitor : monitors_) {
      if (!monitor) continue;
      for (monitor->update(); monitor->connected() && !monitor->gone() && Clock::now() < deadline; monitor->update()) {
        std::this_thread::sleep_for(10ms);
      }
    }
    for (auto& socket : sockets_) socket.close();
  }

  // Between steps too: a worker that exits while the engine idles is noticed within 200 ms (one
  // of another node within 200 ms + kReasonGrace of its connection closing, or
  // PeerMonitor::kHeartbeatTimeout later when its node vanished or it stopped answering).
  void start_monitor() {
    monitor_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(monitor_mutex_);
      while (!monitor_cv_.wait_for(lock, 200ms, [&] { return stopping_; })) {
        check_workers();
        check_remote_workers();
      }
    });
  }

  // The gloo groups' rendezvous store, hosted here: at --data-parallel-address and
  // --data-parallel-rpc-port when given (always for a deployment over several nodes), else on a
  // free port of 127.0.0.1. Sets store_ and returns its port.
  Result<int> host_store() {
    const MultiNodeConfig& nodes = parallel_.nodes;
    if (nodes.fixed_rendezvous(parallel_.data_parallel_size)) {
      auto store = TcpStore::connect(
          TcpStoreOptions{.address = nodes.rendezvous_address(), .port = nodes.rpc_port, .host = true});
      if (!store.ok()) {
        return store.error().with_context(fmt::format("--data-parallel-address {} --data-parallel-rpc-port {}",
                                                      nodes.rendezvous_address(), nodes.rpc_port));
      }
      store_ = std::move(store).value();
      return nodes.rpc_port;
    }
    // A port the kernel just handed out and released; another process taking it in between makes
    // the store's bind fail, and a few tries get past that.
    for (int attempt = 0;; ++attempt) {
      MS_ASSIGN_OR_RETURN(const int port, free_loopback_port());
      auto store = TcpStore::connect(TcpStoreOptions{.address = "127.0.0.1", .port = port, .host = true});
      if (store.ok()) {
        store_ = std::move(store).value();
        return port;
      }
      if (attempt == 4) return store.error().with_context("--distributed-executor-backend mp");
    }
  }

  ParallelConfig parallel_;
  std::mutex reap_mutex_;
  std::thread monitor_;
  std::mutex monitor_mutex_;
  std::condition_variable monitor_cv_;
  bool stopping_ = false;
  zmq::context_t context_;
  std::vector<zmq::socket_t> sockets_;  // per rank, PAIR
  std::vector<pid_t> pids_;             // per rank of this host; -1 once reaped, and for other nodes' ranks
  // Per rank of another node (null for this host's): its connection, read by the monitor thread.
  std::vector<std::unique_ptr<mp::PeerMonitor>> monitors_;
  std::vector<Clock::time_point> gone_since_;  // per rank of another node: when it disconnected
  Clock::time_point connect_deadline_;         // for the ranks of other nodes to connect
  std::vector<size_t> kv_bytes_;               // per rank
  int num_kv_blocks_ = 0;                      // per DP replica
  std::shared_ptr<TcpStore> store_;
};

Result<std::unique_ptr<ProcessRanks>> ProcessRanks::start(const std::string& model_dir, const LoadOptions& load,
                                                          const ParallelConfig& parallel, int num_blocks,
                                                          int block_size,
                                                          const std::optional<cuda_backend::RunnerOptions>& cuda) {
  std::unique_ptr<ProcessRanks> ranks(new ProcessRanks());
  ranks->parallel_ = parallel;
  const MultiNodeConfig& nodes = parallel.nodes;
  const bool spans_nodes = nodes.spans_nodes(parallel.data_parallel_size);
  const int world = parallel.world_size();
  MS_ASSIGN_OR_RETURN(const int store_port, ranks->host_store());
  const std::string store_address = nodes.fixed_rendezvous(parallel.data_parallel_size) ? nodes.rendezvous_address()
                                                                                        : "127.0.0.1";
  // What every worker's SPEC shares (runtime/mp/worker_spec.h). A --headless node reads it from
  // the store and starts its ranks' workers with it; config.json lets it check that it serves
  // the same model.
  Json spec_base{{"model_dir", model_dir},
                 {"load", mp::load_options_json(load)},
                 {"parallel", mp::parallel_json(parallel)},
                 {"num_blocks", num_blocks},
                 {"block_size", block_size},
                 {"store_address", store_address},
                 {"store_port", store_port},
                 // Over several nodes, a rank may still be loading its shard when the last one connects
                 // (at most ready_timeout after the start): twice that for the rendezvous.
                 {"rendezvous_timeout_ms",
                  spans_nodes ? 2 * nodes.ready_timeout.count() : kLocalRendezvousTimeout.count()},
                 {"parent", static_cast<int64_t>(getpid())},
                 {"log_level", static_cast<int>(spdlog::get_level())}};
  if (auto config_text = read_text_file(model_dir + "/config.json"); config_text.ok()) {
    spec_base["config_json"] = *config_text;
  }
  if (cuda) {
    spec_base["cuda"] = Json{{"gpu_memory_utilization", cuda->gpu_memory_utilization},
                             {"max_num_batched_tokens", cuda->max_num_batched_tokens},
                             {"max_logit_rows", cuda->max_logit_rows}};
  }
  ranks->pids_.assign(world, -1);
  ranks->kv_bytes_.assign(world, 0);
  ranks->monitors_.resize(world);
  ranks->gone_since_.resize(world);
  std::vector<int> remote_ranks;
  for (int rank = 0; rank < world; ++rank) {
    const bool local = parallel.is_local_rank(rank);
    zmq::socket_t socket(ranks->context_, zmq::socket_type::pair);
    // Another node's worker must still receive 'Q' after this socket is closed at shutdown.
    socket.set(zmq::sockopt::linger, local ? 0 : 1000);
    if (!local)
      ranks->monitors_[rank] = std::make_unique<mp::PeerMonitor>(ranks->context_, socket, std::to_string(rank));
    const std::string bind_address = local ? "127.0.0.1" : store_address;
    try {
      socket.bind("tcp://" + bind_address + ":*");
    } catch (const zmq::error_t& error) {
      return make_error("--distributed-executor-backend mp: cannot open rank {}'s control socket on {}: {}", rank,
                        bind_address, error.what());
    }
    const std::string endpoint = socket.get(zmq::sockopt::last_endpoint);
    ranks->sockets_.push_back(std::move(socket));
    if (!local) {
      ranks->store_->set(fmt::format("mp/endpoint/{}", rank), std::vector<char>(endpoint.begin(), endpoint.end()));
      remote_ranks.push_back(rank);
      continue;
    }
    Json spec = spec_base;
    spec["rank"] = rank;
    spec["endpoint"] = endpoint;
    MS_ASSIGN_OR_RETURN(ranks->pids_[rank], mp::spawn_worker(spec));
  }
  std::vector<pid_t> local_pids;
  for (pid_t pid : ranks->pids_) {
    if (pid > 0) local_pids.push_back(pid);
  }
  if (!local_pids.empty()) {
    spdlog::info("--distributed-executor-backend mp: started {} rank workers (pids {}), loading their shards",
                 local_pids.size(), fmt::join(local_pids, ", "));
  }
  if (!remote_ranks.empty()) {
    // Last: a headless node reads the endpoints once the spec is there.
    const std::string text = spec_base.dump();
    ranks->store_->set("mp/spec", std::vector<char>(text.begin(), text.end()));
    spdlog::info("--distributed-executor-backend mp: waiting up to {} s (VLLM_ENGINE_READY_TIMEOUT_S) for ranks {} "
                 "of other nodes to join at {}:{}",
                 nodes.ready_timeout.count() / 1000, fmt::join(remote_ranks, ", "), store_address, store_port);
  }
  ranks->connect_deadline_ = Clock::now() + nodes.ready_timeout;
  ranks->start_monitor();
  ranks->await_all('R', [&](int rank, mp::Reader& in) { ranks->kv_bytes_[rank] = in.get<uint64_t>(); });
  ranks->num_kv_blocks_ = num_blocks;
  if (num_blocks <= 0) {
    // CUDA ranks: every worker has loaded and profiled its largest step; each says what its GPU
    // holds now, and all allocate the count the fullest GPU allows.
    std::vector<RankMemory> memory(world);
    Writer measure('M');
    for (int rank = 0; rank < world; ++rank) ranks->send(rank, measure);
    ranks->await_all('M', [&](int rank, mp::Reader& in) {
      const std::vector<char> gpu = in.get_array<char>();
      memory[rank].gpu.assign(gpu.begin(), gpu.end());
      memory[rank].memory.free_bytes = in.get<uint64_t>();
      memory[rank].memory.total_bytes = in.get<uint64_t>();
      memory[rank].bytes_per_block = in.get<uint64_t>();
    });
    MS_ASSIGN_OR_RETURN(ranks->num_kv_blocks_, kv_blocks_shared(memory, cuda->gpu_memory_utilization));
    Writer allocate('A');
    allocate.put<int32_t>(ranks->num_kv_blocks_);
    for (int rank = 0; rank < world; ++rank) ranks->send(rank, allocate);
    ranks->await_all('A', [&](int rank, mp::Reader& in) { ranks->kv_bytes_[rank] = in.get<uint64_t>(); });
  }
  return ranks;
}

// A gloo group of the workers, meeting through the engine's store at address:port.
GlooOptions group_options(const std::string& address, int port, int world_size, int rank, std::string prefix) {
  GlooOptions options;
  options.address = address;
  options.port = port;
  options.world_size = world_size;
  options.rank = rank;
  options.prefix = std::move(prefix);
  return options;
}

// The worker's loop over the engine's messages.
int serve_rank(const Json& spec) {
  const int rank = spec.at("rank").get<int>();
  // The engine's --log-level; each line says which rank logged it.
  spdlog::set_level(static_cast<spdlog::level::level_enum>(spec.value("log_level", int{spdlog::level::info})));
  spdlog::set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [%l] [rank {}] %v", rank));
  const ParallelConfig parallel = mp::parallel_from(spec.at("parallel"));
  const LoadOptions load = mp::load_options_from(spec.at("load"));
  const std::string model_dir = spec.at("model_dir").get<std::string>();
  const int tp = parallel.tensor_parallel_size;
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::pair);
  socket.set(zmq::sockopt::linger, 1000);
  socket.connect(spec.at("endpoint").get<std::string>());
  auto send_error = [&](const std::string& why) {
    Writer out('E');
    out.append(why.data(), why.size());
    zmq::message_t message = make_message(out);
    (void)socket.send(message, zmq::send_flags::dontwait);
  };
  try {
    auto config = load_model_config(model_dir, load.hf_overrides);
    if (!config.ok()) throw std::runtime_error(config.error().message);
    const int num_blocks = spec.at("num_blocks").get<int>();
    const int block_size = spec.at("block_size").get<int>();
    Result<std::unique_ptr<RankWorker>> shard = make_error("no rank");
    if (spec.contains("cuda")) {  // the rank reads its shard of the checkpoint itself
      const Json& cuda = spec.at("cuda");
      shard = cuda_backend::make_rank(
          model_dir, *config, load,
          cuda_backend::RunnerOptions{.num_kv_blocks = num_blocks,
                                      .gpu_memory_utilization = cuda.at("gpu_memory_utilization").get<float>(),
                                      .block_size = block_size,
                                      .max_num_batched_tokens = cuda.at("max_num_batched_tokens").get<int>(),
                                      .max_logit_rows = cuda.value("max_logit_rows", 0)},
          parallel, rank);
    } else {
      auto weights = open_weights(model_dir, load);
      if (!weights.ok()) throw std::runtime_error(weights.error().message);
      shard = load_cpu_rank(*config, **weights, parallel, load.model, rank, num_blocks, block_size);
    }
    if (!shard.ok()) throw std::runtime_error(shard.error().message);
    RankWorker& me = **shard;
    me.bind_thread();
    // The groups, through the engine's store: the replica's TP group, then the EP group. Their
    // rendezvous waits up to rendezvous_timeout_ms for the other ranks (those of other nodes may
    // start later); each collective then gets gloo's usual limit.
    const std::string store_address = spec.value("store_address", "127.0.0.1");
    const int port = spec.at("store_port").get<int>();
    const std::chrono::milliseconds rendezvous_timeout(spec.value("rendezvous_timeout_ms", int64_t{60'000}));
    auto store =
        TcpStore::connect(TcpStoreOptions{.address = store_address, .port = port, .timeout = rendezvous_timeout});
    if (!store.ok()) throw std::runtime_error(store.error().message);
    auto join = [&](int size, int group_rank, std::string prefix) -> std::unique_ptr<Communicator> {
      GlooOptions options = group_options(store_address, port, size, group_rank, std::move(prefix));
      options.timeout = rendezvous_timeout;
      auto comm = GlooCommunicator::connect(options, *store);
      if (!comm.ok()) throw std::runtime_error(comm.error().message);
      (*comm)->set_timeout(GlooOptions{}.timeout);
      return std::move(*comm);
    };
    std::unique_ptr<Communicator> tp_comm, ep_comm;
    if (tp > 1) tp_comm = join(tp, rank % tp, fmt::format("tp{}", rank / tp));
    if (parallel.uses_expert_parallel()) ep_comm = join(parallel.world_size(), rank, "ep");
    me.set_communicators(std::move(tp_comm), std::move(ep_comm));
    std::vector<int> moe_layers;
    for (int layer = 0; layer < config->num_layers; ++layer) {
      if (config->layer_is_moe[layer]) moe_layers.push_back(layer);
    }
    const int num_physical = parallel.uses_expert_parallel() && !moe_layers.empty()
                                 ? config->moe->num_experts + parallel.num_redundant_experts
                                 : 0;
    {
      Writer out('R');
      out.put<uint64_t>(me.kv_bytes());
      zmq::message_t message = make_message(out);
      (void)socket.send(message, zmq::send_flags::none);
    }
    const pid_t parent = static_cast<pid_t>(spec.at("parent").get<int64_t>());
    mp::Batch batch;
    while (true) {
      zmq::message_t message;
      // Wakes every second to see whether the engine is still there.
      std::vector<zmq::pollitem_t> items{{static_cast<void*>(socket), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(1000));
      if (getppid() != parent) return 1;
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      if (!socket.recv(message, zmq::recv_flags::dontwait)) continue;
      const char* data = static_cast<const char*>(message.data());
      if (message.size() == 0) throw std::runtime_error("an empty control message");
      mp::Reader in(data + 1, message.size() - 1);
      if (data[0] == 'Q') return 0;
      if (data[0] == 'M') {  // the KV sizing of CUDA ranks: this rank's GPU now
        me.runner().device().synchronize();
        const std::optional<DeviceMemory> memory = me.runner().device().memory();
        if (!memory) throw std::runtime_error("a KV cache sized from memory on a device without a memory query");
        char host[256] = {};
        gethostname(host, sizeof host - 1);
        const std::string gpu = fmt::format("{}:{}", host, me.runner().device().device_index());
        Writer out('M');
        out.put_array<char>(std::span<const char>(gpu.data(), gpu.size()));
        out.put<uint64_t>(memory->free_bytes);
        out.put<uint64_t>(memory->total_bytes);
        out.put<uint64_t>(me.runner().kv_bytes_per_block());
        zmq::message_t reply = make_message(out);
        (void)socket.send(reply, zmq::send_flags::none);
      } else if (data[0] == 'A') {
        const Status allocated = me.runner().allocate_kv_cache(in.get<int32_t>());
        if (!allocated.ok()) throw std::runtime_error(allocated.error().message);
        Writer out('A');
        out.put<uint64_t>(me.kv_bytes());
        zmq::message_t reply = make_message(out);
        (void)socket.send(reply, zmq::send_flags::none);
      } else if (data[0] == 'S') {
        mp::decode_batch(in, batch);
        Tensor logits(DType::kF32, Shape{logit_rows(batch.seqs), config->vocab_size});
        ExpertLoad load = empty_step_load(*config, num_physical);
        me.forward(batch.seqs, logits.view(), me.is_tp_leader() ? &load : nullptr);
        Writer out('D');
        if (me.is_tp_leader()) {
          out.append(logits.view().as<float>(), logits.numel() * sizeof(float));
          out.put_array<int64_t>(load.counts);
          out.put_array<int64_t>(load.slot_counts);
        }
        zmq::message_t reply = make_message(out);
        (void)socket.send(reply, zmq::send_flags::none);
      } else if (data[0] == 'P') {
        const uint32_t layers = in.get<uint32_t>();
        if (layers != moe_layers.size()) throw std::runtime_error("a placement for the wrong number of layers");
        std::vector<std::shared_ptr<const ExpertMap>> maps;
        for (uint32_t i = 0; i < layers; ++i) {
          maps.push_back(std::make_shared<const ExpertMap>(
              ExpertMap::from_phys2log(in.get_array<int32_t>(), config->moe->num_experts, parallel.world_size())));
        }
        me.apply_placement(moe_layers, maps);
        Writer out('K');
        zmq::message_t reply = make_message(out);
        (void)socket.send(reply, zmq::send_flags::none);
      } else {
        throw std::runtime_error(fmt::format("an unknown control message '{}'", data[0]));
      }
    }
  } catch (const std::exception& error) {
    const std::string why = fmt::format("rank {}: {}", rank, error.what());
    spdlog::error("worker {}", why);
    send_error(why);
    socket.close();
    return 1;
  }
}

}  // namespace

Result<BuiltProcessRanks> make_process_ranks(const std::string& model_dir, const LoadOptions& load,
                                             const ParallelConfig& parallel, int num_blocks, int block_size,
                                             const std::optional<cuda_backend::RunnerOptions>& cuda) {
  MS_ASSIGN_OR_RETURN(auto ranks, ProcessRanks::start(model_dir, load, parallel, num_blocks, block_size, cuda));
  const int blocks = ranks->num_kv_blocks();
  return BuiltProcessRanks{.executor = std::move(ranks), .num_kv_blocks = blocks};
}

int run_rank_worker(const std::string& spec_text) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Ctrl-C reaches the whole process group; the engine decides when its workers stop.
  signal(SIGINT, SIG_IGN);
  Json spec;
  try {
    spec = Json::parse(spec_text);
  } catch (const std::exception& error) {
    spdlog::error("moeserve _worker: a bad spec: {}", error.what());
    return 1;
  }
  if (getppid() != static_cast<pid_t>(spec.value("parent", int64_t{-1}))) return 1;  // the engine is gone
  return serve_rank(spec);
}

}  // namespace moeserve

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
#include <filesystem>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "comm/gloo/gloo_communicator.h"
#include "comm/gloo/tcp_store.h"
#include "model/config.h"
#include "runtime/mp/wire.h"

namespace moeserve {

namespace {

using Json = nlohmann::json;
using mp::Writer;
using namespace std::chrono_literals;

// How often the engine looks at its workers' processes while it waits for them.
constexpr auto kPollInterval = 100ms;

Json load_options_json(const LoadOptions& load) {
  return Json{{"hf_overrides", load.hf_overrides},
              {"load_format", static_cast<int>(load.load_format)},
              {"dtype", static_cast<int>(load.dtype)},
              {"seed", load.seed},
              {"quantize_fp8", load.quantize_fp8},
              {"kv_cache_fp8", load.kv_cache_fp8},
              {"mla_mode", static_cast<int>(load.model.mla_mode)},
              {"precision_quantize_fp8", load.model.precision.quantize_fp8},
              {"precision_f32", static_cast<int>(load.model.precision.f32)},
              {"fp8_activations", load.model.fp8_activations},
              {"model_kv_cache_fp8", load.model.kv_cache_fp8}};
}

LoadOptions load_options_from(const Json& j) {
  LoadOptions load;
  load.hf_overrides = j.at("hf_overrides");
  load.load_format = static_cast<LoadFormat>(j.at("load_format").get<int>());
  load.dtype = static_cast<ActivationDType>(j.at("dtype").get<int>());
  load.seed = j.at("seed").get<uint64_t>();
  load.quantize_fp8 = j.at("quantize_fp8").get<bool>();
  load.kv_cache_fp8 = j.at("kv_cache_fp8").get<bool>();
  load.model.mla_mode = static_cast<MlaMode>(j.at("mla_mode").get<int>());
  load.model.precision.quantize_fp8 = j.at("precision_quantize_fp8").get<bool>();
  load.model.precision.f32 = static_cast<WeightPrecision::Float32>(j.at("precision_f32").get<int>());
  load.model.fp8_activations = j.at("fp8_activations").get<bool>();
  load.model.kv_cache_fp8 = j.at("model_kv_cache_fp8").get<bool>();
  return load;
}

Json parallel_json(const ParallelConfig& p) {
  return Json{{"tp", p.tensor_parallel_size},
              {"dp", p.data_parallel_size},
              {"ep", p.enable_expert_parallel},
              {"all2all", static_cast<int>(p.all2all)},
              {"placement", static_cast<int>(p.placement)},
              {"redundant", p.num_redundant_experts},
              {"threads_per_rank", p.threads_per_rank}};
}

ParallelConfig parallel_from(const Json& j) {
  ParallelConfig p;
  p.tensor_parallel_size = j.at("tp").get<int>();
  p.data_parallel_size = j.at("dp").get<int>();
  p.enable_expert_parallel = j.at("ep").get<bool>();
  p.all2all = static_cast<All2AllBackend>(j.at("all2all").get<int>());
  p.placement = static_cast<ExpertPlacement>(j.at("placement").get<int>());
  p.num_redundant_experts = j.at("redundant").get<int>();
  p.threads_per_rank = j.at("threads_per_rank").get<int>();
  p.executor = DistributedExecutor::kMp;
  return p;
}

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

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return "stopped";
}

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
                                                     const ParallelConfig& parallel, int num_blocks, int block_size);

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
      fail(fmt::format("rank {}'s worker (pid {}) does not take its messages", rank, pids_[rank]));
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
          fail(fmt::format("rank {}'s worker (pid {}) failed: {}", rank, pids_[rank],
                           std::string(data + 1, message.size() - 1)));
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

  // Fails the group when a worker has exited.
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

  // A rank failed: the group cannot go on (the other ranks would wait for it in their
  // collectives). Says why, ends the workers and the process.
  [[noreturn]] void fail(const std::string& why) {
    spdlog::critical("--distributed-executor-backend mp: {}; the engine cannot go on, exiting", why);
    spdlog::default_logger()->flush();
    for (pid_t pid : pids_) {
      if (pid > 0) kill(pid, SIGKILL);
    }
    for (pid_t pid : pids_) {
      if (pid > 0) waitpid(pid, nullptr, 0);
    }
    std::_Exit(1);
  }

  void shutdown() {
    for (int rank = 0; rank < static_cast<int>(sockets_.size()); ++rank) {
      if (pids_[rank] <= 0) continue;
      Writer out('Q');
      zmq::message_t message = make_message(out);
      (void)sockets_[rank].send(message, zmq::send_flags::dontwait);
    }
    // Up to 5 s for the workers to leave, then they are killed.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (pid_t& pid : pids_) {
      if (pid <= 0) continue;
      while (waitpid(pid, nullptr, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          kill(pid, SIGKILL);
          waitpid(pid, nullptr, 0);
          break;
        }
        std::this_thread::sleep_for(10ms);
      }
      pid = -1;
    }
    for (auto& socket : sockets_) socket.close();
  }

  // Between steps too: a worker that exits while the engine idles is noticed within 200 ms.
  void start_monitor() {
    monitor_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(monitor_mutex_);
      while (!monitor_cv_.wait_for(lock, 200ms, [&] { return stopping_; })) check_workers();
    });
  }

  ParallelConfig parallel_;
  std::mutex reap_mutex_;
  std::thread monitor_;
  std::mutex monitor_mutex_;
  std::condition_variable monitor_cv_;
  bool stopping_ = false;
  zmq::context_t context_;
  std::vector<zmq::socket_t> sockets_;  // per rank, PAIR
  std::vector<pid_t> pids_;             // per rank; -1 once reaped
  std::vector<size_t> kv_bytes_;        // per rank
  std::shared_ptr<TcpStore> store_;
};

Result<std::unique_ptr<ProcessRanks>> ProcessRanks::start(const std::string& model_dir, const LoadOptions& load,
                                                          const ParallelConfig& parallel, int num_blocks,
                                                          int block_size) {
  std::error_code error;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", error).string();
  if (error) return make_error("--distributed-executor-backend mp: cannot find this binary: {}", error.message());
  std::unique_ptr<ProcessRanks> ranks(new ProcessRanks());
  ranks->parallel_ = parallel;
  const int world = parallel.world_size();
  // The gloo groups' rendezvous: a store in this process on a free port of 127.0.0.1.
  // (A port the kernel just handed out and released; another process taking it in between makes
  // the store's bind fail, and a few tries get past that.)
  int store_port = 0;
  for (int attempt = 0; !ranks->store_; ++attempt) {
    MS_ASSIGN_OR_RETURN(store_port, free_loopback_port());
    auto store = TcpStore::connect(TcpStoreOptions{.address = "127.0.0.1", .port = store_port, .host = true});
    if (store.ok()) {
      ranks->store_ = std::move(store).value();
    } else if (attempt == 4) {
      return store.error().with_context("--distributed-executor-backend mp");
    }
  }
  const Json spec_base{{"model_dir", model_dir},
                       {"load", load_options_json(load)},
                       {"parallel", parallel_json(parallel)},
                       {"num_blocks", num_blocks},
                       {"block_size", block_size},
                       {"store_port", store_port},
                       {"parent", static_cast<int64_t>(getpid())},
                       {"log_level", static_cast<int>(spdlog::get_level())}};
  ranks->pids_.assign(world, -1);
  ranks->kv_bytes_.assign(world, 0);
  for (int rank = 0; rank < world; ++rank) {
    zmq::socket_t socket(ranks->context_, zmq::socket_type::pair);
    socket.set(zmq::sockopt::linger, 0);
    socket.bind("tcp://127.0.0.1:*");
    Json spec = spec_base;
    spec["rank"] = rank;
    spec["endpoint"] = socket.get(zmq::sockopt::last_endpoint);
    ranks->sockets_.push_back(std::move(socket));
    std::string spec_text = spec.dump();
    std::string arg0 = "moeserve", arg1 = "_worker";
    char* argv[] = {arg0.data(), arg1.data(), spec_text.data(), nullptr};
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) return make_error("--distributed-executor-backend mp: fork failed: {}", strerror(errno));
    if (pid == 0) {
      // The worker dies with the engine, even when the engine is killed.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      execv(self.c_str(), argv);
      _exit(127);
    }
    ranks->pids_[rank] = pid;
  }
  spdlog::info("--distributed-executor-backend mp: started {} rank workers (pids {}), loading their shards", world,
               fmt::join(ranks->pids_, ", "));
  ranks->await_all('R', [&](int rank, mp::Reader& in) { ranks->kv_bytes_[rank] = in.get<uint64_t>(); });
  ranks->start_monitor();
  return ranks;
}

// A gloo group of the workers, meeting through the engine's store on 127.0.0.1:port.
GlooOptions group_options(int port, int world_size, int rank, std::string prefix) {
  GlooOptions options;
  options.address = "127.0.0.1";
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
  const ParallelConfig parallel = parallel_from(spec.at("parallel"));
  const LoadOptions load = load_options_from(spec.at("load"));
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
    auto weights = open_weights(model_dir, load);
    if (!weights.ok()) throw std::runtime_error(weights.error().message);
    auto shard = RankShard::load(*config, **weights, parallel, load.model, rank, spec.at("num_blocks").get<int>(),
                                 spec.at("block_size").get<int>());
    if (!shard.ok()) throw std::runtime_error(shard.error().message);
    weights->reset();  // the shard holds its own copy
    RankShard& me = **shard;
    // The groups, through the engine's store: the replica's TP group, then the EP group.
    auto store = TcpStore::connect(TcpStoreOptions{.address = "127.0.0.1", .port = spec.at("store_port").get<int>()});
    if (!store.ok()) throw std::runtime_error(store.error().message);
    std::unique_ptr<Communicator> tp_comm, ep_comm;
    const int port = spec.at("store_port").get<int>();
    if (tp > 1) {
      auto comm = GlooCommunicator::connect(group_options(port, tp, rank % tp, fmt::format("tp{}", rank / tp)), *store);
      if (!comm.ok()) throw std::runtime_error(comm.error().message);
      tp_comm = std::move(*comm);
    }
    if (parallel.uses_expert_parallel()) {
      auto comm = GlooCommunicator::connect(group_options(port, parallel.world_size(), rank, "ep"), *store);
      if (!comm.ok()) throw std::runtime_error(comm.error().message);
      ep_comm = std::move(*comm);
    }
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
      if (data[0] == 'S') {
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

Result<std::unique_ptr<RankExecutor>> make_process_ranks(const std::string& model_dir, const LoadOptions& load,
                                                         const ParallelConfig& parallel, int num_blocks,
                                                         int block_size) {
  MS_ASSIGN_OR_RETURN(auto ranks, ProcessRanks::start(model_dir, load, parallel, num_blocks, block_size));
  return std::unique_ptr<RankExecutor>(std::move(ranks));
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

// --api-server-count N > 1: the leader's side (spawning and watching the API-server processes)
// and the API-server process itself (`moeserve _api_server SPEC`).
#include "apiserver/api_servers.h"

#include <netdb.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "apiserver/engine_frontend.h"
#include "base/spawn_self.h"
#include "apiserver/remote_engine_client.h"
#include "runtime/engine_failure.h"
#include "runtime/mp/worker_spec.h"
#include "server/http_server.h"

namespace moeserve {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How long the API servers get to connect, load the tokenizer and listen.
constexpr auto kReadyTimeout = 600s;
// How often the leader looks at its API servers, the engine and the signals.
constexpr auto kWatchInterval = 50ms;
// How long API servers that were told to stop (SIGTERM) get beyond --shutdown-timeout.
constexpr auto kStopGrace = 10s;
// After an engine failure: how long the API servers get to answer their requests with 503 and
// keep /health at 503 (HttpServer::kFailureGrace) before they are killed.
constexpr auto kFailureWait = 4s;

// ServerOptions over the channel (the test hook and remote_metrics stay behind).
Json options_json(const ServerOptions& o) {
  const SamplingDefaults& d = o.sampling_defaults;
  auto opt = [](const auto& value) { return value ? Json(*value) : Json(); };
  return Json{{"host", o.host},
              {"port", o.port},
              {"served_model_names", o.served_model_names},
              {"api_key", o.api_key},
              {"chat_template_path", o.chat_template_path},
              {"reasoning_parser", static_cast<int>(o.reasoning_parser)},
              {"tool_call_parser", static_cast<int>(o.tool_call_parser)},
              {"disable_log_requests", o.disable_log_requests},
              {"max_body_bytes", o.max_body_bytes},
              {"max_waiting_requests", o.max_waiting_requests},
              {"retry_after_seconds", o.retry_after_seconds},
              {"idle_timeout_seconds", o.idle_timeout_seconds},
              {"max_logprobs", o.max_logprobs},
              {"accept_error_log_interval_s", o.accept_error_log_interval_s},
              {"shutdown_timeout_s", o.shutdown_timeout_s},
              {"temperature", opt(d.temperature)},
              {"top_p", opt(d.top_p)},
              {"top_k", opt(d.top_k)},
              {"min_p", opt(d.min_p)},
              {"repetition_penalty", opt(d.repetition_penalty)},
              {"max_new_tokens", opt(d.max_new_tokens)},
              {"enable_webui", o.enable_webui},
              {"live_interval_s", o.live_interval_s},
              {"request_threads", o.request_threads},
              {"request_queue_limit", o.request_queue_limit},
              {"large_request_queue_limit", o.large_request_queue_limit}};
}

template <typename T>
std::optional<T> opt_from(const Json& j, const char* key) {
  const Json& value = j.at(key);
  return value.is_null() ? std::nullopt : std::optional<T>(value.get<T>());
}

ServerOptions options_from(const Json& j) {
  ServerOptions o;
  o.host = j.at("host").get<std::string>();
  o.port = j.at("port").get<int>();
  o.served_model_names = j.at("served_model_names").get<std::vector<std::string>>();
  o.api_key = j.at("api_key").get<std::string>();
  o.chat_template_path = j.at("chat_template_path").get<std::string>();
  o.reasoning_parser = static_cast<ReasoningParser>(j.at("reasoning_parser").get<int>());
  o.tool_call_parser = static_cast<ToolCallParser>(j.at("tool_call_parser").get<int>());
  o.disable_log_requests = j.at("disable_log_requests").get<bool>();
  o.max_body_bytes = j.at("max_body_bytes").get<size_t>();
  o.max_waiting_requests = j.at("max_waiting_requests").get<int>();
  o.retry_after_seconds = j.at("retry_after_seconds").get<int>();
  o.idle_timeout_seconds = j.at("idle_timeout_seconds").get<int>();
  o.max_logprobs = j.at("max_logprobs").get<int>();
  o.accept_error_log_interval_s = j.at("accept_error_log_interval_s").get<double>();
  o.shutdown_timeout_s = j.at("shutdown_timeout_s").get<double>();
  o.sampling_defaults.temperature = opt_from<float>(j, "temperature");
  o.sampling_defaults.top_p = opt_from<float>(j, "top_p");
  o.sampling_defaults.top_k = opt_from<int>(j, "top_k");
  o.sampling_defaults.min_p = opt_from<float>(j, "min_p");
  o.sampling_defaults.repetition_penalty = opt_from<float>(j, "repetition_penalty");
  o.sampling_defaults.max_new_tokens = opt_from<int>(j, "max_new_tokens");
  o.enable_webui = j.at("enable_webui").get<bool>();
  o.live_interval_s = j.at("live_interval_s").get<double>();
  o.request_threads = j.at("request_threads").get<int>();
  o.request_queue_limit = j.at("request_queue_limit").get<size_t>();
  o.large_request_queue_limit = j.at("large_request_queue_limit").get<size_t>();
  return o;
}

// A socket bound (not listening) to host:port with SO_REUSEPORT: holds the port (a free one
// when `port` is 0) for the API servers, which bind it with SO_REUSEPORT too, until they all
// listen. A given port is first bound without SO_REUSEPORT, so that a port another process holds
// (even another deployment's API servers, which could share it) is refused: {fd, port}.
Result<std::pair<int, int>> reserve_port(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0 || found == nullptr) {
    return make_error("cannot resolve --host {}: {}", host, gai_strerror(rc));
  }
  const int on = 1;
  std::string why;
  if (port != 0) {
    const int probe = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0 || setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(probe, found->ai_addr, found->ai_addrlen) != 0) {
      why = strerror(errno);
    }
    if (probe >= 0) close(probe);
  }
  const int fd = why.empty() ? socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
  if (why.empty() && (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
                      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
                      bind(fd, found->ai_addr, found->ai_addrlen) != 0)) {
    why = strerror(errno);
  }
  freeaddrinfo(found);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (why.empty() && getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) why = strerror(errno);
  if (!why.empty()) {
    if (fd >= 0) close(fd);
    return make_error("cannot listen on --host {} --port {}: {}", host, port, why);
  }
  const int bound = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                               : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return std::pair{fd, bound};
}

// Forks and execs this binary as `moeserve _api_server SPEC`. The child gets SIGTERM when this
// process dies (PR_SET_PDEATHSIG; it then answers its requests with 503 and exits).
Result<pid_t> spawn_api_server(const Json& spec) {
  return spawn_self("_api_server", spec.dump(), SIGTERM, "--api-server-count");
}

std::atomic<int> g_signals{0};  // SIGINT/SIGTERM received by the engine process
void on_stop_signal(int) { g_signals.fetch_add(1); }

// Whether the engine process is still this process's parent and not exiting. PR_SET_PDEATHSIG
// fires when the thread that forked exits: when the engine process is killed, the SIGTERM may
// come while its other threads still run (so getppid() is unchanged), but its main thread is
// then a zombie (state Z, or X) or gone.
bool parent_alive(pid_t parent) {
  if (getppid() != parent) return false;
  std::ifstream stat("/proc/" + std::to_string(parent) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  const char state = line[close + 2];
  return state != 'Z' && state != 'X';
}

// The directory of an ipc:// endpoint, removed by an API server whose engine process was killed
// (its own removal never ran); another API server may have removed it already.
void remove_endpoint_dir(const std::string& endpoint) {
  constexpr std::string_view kScheme = "ipc://";
  if (!endpoint.starts_with(kScheme)) return;
  const std::filesystem::path dir = std::filesystem::path(endpoint.substr(kScheme.size())).parent_path();
  if (dir.filename().string().rfind("moeserve-api-", 0) != 0) return;
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

struct Child {
  int index = 0;
  pid_t pid = -1;  // -1 once reaped
  int status = 0;
};

// Reaps the children that have exited; the first of them, if any.
Child* reap(std::vector<Child>& children) {
  Child* first = nullptr;
  for (Child& child : children) {
    if (child.pid <= 0) continue;
    int status = 0;
    if (waitpid(child.pid, &status, WNOHANG) == child.pid) {
      child.status = status;
      const pid_t was = child.pid;
      child.pid = -1;
      if (!first) {
        first = &child;
        first->pid = -was;  // remembered for the message (negative: reaped)
      }
    }
  }
  return first;
}

bool all_gone(const std::vector<Child>& children) {
  for (const Child& child : children) {
    if (child.pid > 0) return false;
  }
  return true;
}

// SIGTERM to each API server still running, then waits up to `grace`; SIGKILLs what is left.
void stop_children(std::vector<Child>& children, Clock::duration grace, bool forward_signals) {
  for (Child& child : children) {
    if (child.pid > 0) kill(child.pid, SIGTERM);
  }
  const auto deadline = Clock::now() + grace;
  int seen = g_signals.load();
  while (!all_gone(children) && Clock::now() < deadline) {
    std::this_thread::sleep_for(kWatchInterval);
    (void)reap(children);
    if (forward_signals && g_signals.load() != seen) {  // a second Ctrl-C: end their requests at once
      seen = g_signals.load();
      for (Child& child : children) {
        if (child.pid > 0) kill(child.pid, SIGTERM);
      }
    }
  }
  for (Child& child : children) {
    if (child.pid <= 0) continue;
    spdlog::warn("API server {} (pid {}) did not stop: killing it", child.index, child.pid);
    kill(child.pid, SIGKILL);
    waitpid(child.pid, nullptr, 0);
    child.pid = -1;
  }
}

// The engine failed (fail_engine on another thread, which has told the API servers): wait for
// them to answer their requests and exit, then end this process with status 1.
[[noreturn]] void exit_for_engine_failure(std::vector<Child>& children, const std::string& reason,
                                          const std::string& endpoint_dir) {
  const auto deadline = Clock::now() + kFailureWait;
  while (!all_gone(children) && Clock::now() < deadline) {
    std::this_thread::sleep_for(kWatchInterval);
    (void)reap(children);
  }
  for (Child& child : children) {
    if (child.pid > 0) {
      kill(child.pid, SIGKILL);
      waitpid(child.pid, nullptr, 0);
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(endpoint_dir, ignored);  // _Exit runs no destructor
  spdlog::critical("the engine failed ({}): exiting with status 1", reason);
  spdlog::default_logger()->flush();
  std::_Exit(1);
}

// A private directory for the ipc:// endpoint, removed with this object.
struct PrivateDir {
  std::string path;
  ~PrivateDir() {
    if (path.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

}  // namespace

bool api_servers_built() { return true; }

Result<int> serve_with_api_servers(EngineClient& engine, ApiServersSetup setup) {
  const int count = setup.count;
  PrivateDir dir;
  {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/moeserve-api-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      return make_error("--api-server-count: cannot create a directory for the engine's endpoint ({}): {}", pattern,
                        strerror(errno));
    }
    dir.path = pattern;
  }
  const std::string endpoint = "ipc://" + dir.path + "/engine";
  MS_ASSIGN_OR_RETURN(auto reserved, reserve_port(setup.options.host, setup.options.port));
  int reserved_fd = reserved.first;
  setup.options.port = reserved.second;
  struct CloseFd {
    int& fd;
    ~CloseFd() {
      if (fd >= 0) close(fd);
    }
  } close_reserved{reserved_fd};

  const EngineInfo& info = engine.info();
  Json config{{"server", options_json(setup.options)},
              {"tokenizer_dir", setup.tokenizer_dir},
              {"model_dir", info.model_dir},
              {"architecture", info.architecture ? Json(static_cast<int>(*info.architecture)) : Json()},
              {"architecture_name", info.architecture_name},
              {"max_model_len", info.max_model_len},
              {"num_total_params", info.num_total_params},
              {"num_active_params", info.num_active_params},
              {"deployment", setup.deployment},
              {"count", count}};
  apiserver::EngineFrontend frontend(engine, std::move(config), *setup.registry, setup.live_stats, setup.ep_stats);
  MS_RETURN_IF_ERROR(frontend.bind(endpoint));
  frontend.start();
  set_engine_failure_handler([&frontend](const std::string& reason) { frontend.fail(reason); });

  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  std::vector<Child> children;
  for (int index = 0; index < count; ++index) {
    const Json spec{{"endpoint", endpoint},
                    {"index", index},
                    {"parent", static_cast<int64_t>(getpid())},
                    {"log_level", static_cast<int>(spdlog::get_level())}};
    Result<pid_t> pid = spawn_api_server(spec);
    if (!pid.ok()) {
      stop_children(children, kStopGrace, false);
      frontend.stop();
      set_engine_failure_handler(nullptr);
      return pid.error();
    }
    children.push_back({index, *pid, 0});
  }
  std::vector<pid_t> pids;
  for (const Child& child : children) pids.push_back(child.pid);

  // Returns the exit status once something ends the deployment.
  auto watch = [&](bool until_ready) -> std::optional<int> {
    const auto deadline = Clock::now() + kReadyTimeout;
    while (true) {
      if (const auto failure = engine_failure()) exit_for_engine_failure(children, *failure, dir.path);
      if (Child* dead = reap(children)) {
        const pid_t pid = -dead->pid;
        dead->pid = -1;
        spdlog::critical("API server {} (pid {}) {}{}; the deployment cannot go on without it (as vLLM), stopping "
                         "the other API servers and the engine",
                         dead->index, pid, mp::describe_status(dead->status),
                         until_ready ? " before it was ready" : "");
        spdlog::default_logger()->flush();
        stop_children(children, kStopGrace, false);
        return 1;
      }
      if (g_signals.load() > 0) {
        spdlog::info("received a stop signal: stopping the {} API servers", count);
        const auto grace = std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(std::min(setup.options.shutdown_timeout_s, 1e6))) +
                           kStopGrace;
        stop_children(children, grace, true);
        if (const auto failure = engine_failure()) exit_for_engine_failure(children, *failure, dir.path);
        return 0;
      }
      if (until_ready && frontend.num_ready() >= count) return std::nullopt;
      if (until_ready && Clock::now() > deadline) {
        spdlog::critical("the API servers did not start within {} s", kReadyTimeout.count());
        stop_children(children, kStopGrace, false);
        return 1;
      }
      std::this_thread::sleep_for(kWatchInterval);
    }
  };

  std::optional<int> status = watch(true);
  if (!status) {
    if (reserved_fd >= 0) close(reserved_fd);
    reserved_fd = -1;
    spdlog::info("serving {} on http://{}:{} (OpenAI API under /v1{}; {} API server processes, pids {})",
                 setup.options.served_model_names.front(), setup.options.host, setup.options.port,
                 setup.options.enable_webui ? ", live page at /" : "", count, fmt::join(pids, ", "));
    status = watch(false);
  }
  frontend.stop();
  set_engine_failure_handler(nullptr);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  return *status;
}

int run_api_server(const std::string& spec_text) {
  Json spec;
  int index = 0;
  pid_t parent = 0;
  std::string endpoint;
  try {
    spec = Json::parse(spec_text);
    index = spec.at("index").get<int>();
    parent = static_cast<pid_t>(spec.at("parent").get<int64_t>());
    endpoint = spec.at("endpoint").get<std::string>();
    spdlog::set_level(static_cast<spdlog::level::level_enum>(spec.value("log_level", int{spdlog::level::info})));
  } catch (const std::exception& error) {
    spdlog::error("_api_server: a bad SPEC ({}); this subcommand is started by `moeserve serve --api-server-count N`",
                  error.what());
    return 1;
  }
  spdlog::set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [%l] [api server {}] %v", index));
  if (getppid() != parent) return 1;
  // Ctrl-C reaches the whole process group: the leader decides. SIGTERM (from the leader, or
  // PR_SET_PDEATHSIG when it dies) only counts here (threads started before main, OpenBLAS's,
  // could take a signal meant to be blocked); a thread of its own acts on it.
  signal(SIGINT, SIG_IGN);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);

  apiserver::RemoteEngineClient client(endpoint, index, parent);
  Result<Json> config = client.connect(60s);
  if (!config.ok()) {
    spdlog::error("API server {}: {}", index, config.error().message);
    return 1;
  }
  ServerOptions options;
  std::string tokenizer_dir;
  EngineInfo info;
  LiveSources live;
  try {
    options = options_from(config->at("server"));
    tokenizer_dir = config->at("tokenizer_dir").get<std::string>();
    info.model_dir = config->at("model_dir").get<std::string>();
    if (!config->at("architecture").is_null()) {
      info.architecture = static_cast<Architecture>(config->at("architecture").get<int>());  // the same binary
    }
    info.architecture_name = config->at("architecture_name").get<std::string>();
    info.max_model_len = config->at("max_model_len").get<int>();
    info.num_total_params = config->at("num_total_params").get<int64_t>();
    info.num_active_params = config->at("num_active_params").get<int64_t>();
    live.deployment = config->at("deployment");
    live.deployment["api_servers"] = config->at("count");
  } catch (const std::exception& error) {
    spdlog::error("API server {}: a bad config from the engine: {}", index, error.what());
    return 1;
  }
  auto tokenizer = Tokenizer::from_dir(tokenizer_dir);
  if (!tokenizer.ok()) {
    spdlog::error("API server {}: loading the tokenizer: {}", index, tokenizer.error().message);
    return 1;
  }
  client.set_engine(info, *tokenizer);
  MetricsRegistry registry;
  // This process's own counter (the rest of /metrics is the engine process's, fetched per scrape).
  client.set_submitted_counter(
      &registry.counter("moeserve:api_server_requests",
                        "Engine requests (one per choice) submitted by this API-server process (--api-server-count).",
                        {{"api_server", std::to_string(index)}}));
  auto live_stats = std::make_shared<LiveStats>();
  client.set_live_mirror(live_stats);
  live.stats = live_stats;
  live.ep_stats = [&client] { return client.ep_stats(); };  // null until the engine reports EP
  options.reuse_port = true;
  options.response_headers = fmt::format("x-moeserve-api-server: {}\r\n", index);
  options.remote_metrics = [&client] { return client.fetch_metrics(); };

  HttpServer server(options, client, registry, std::move(live));
  set_engine_failure_handler([&server](const std::string& reason) { server.end_for_engine_failure(reason); });
  // The engine is gone: fail_engine answers the requests in flight (the handler), then ends this
  // process with status 1 if it has not ended by then; it blocks, so it runs on a thread of its own.
  client.on_lost([parent, endpoint](const std::string& reason) {
    if (!parent_alive(parent)) remove_endpoint_dir(endpoint);  // killed: its own removal never ran
    std::thread([reason] { fail_engine(reason); }).detach();
  });
  client.start();
  if (auto started = server.start(); !started.ok()) {
    spdlog::error("API server {}: {}", index, started.error().message);
    return 1;
  }
  std::atomic<bool> done{false};
  std::thread signals([&] {
    int seen = 0;
    while (!done) {
      std::this_thread::sleep_for(100ms);
      if (g_signals.load() == seen) continue;
      seen = g_signals.load();
      std::this_thread::sleep_for(50ms);  // a dying engine process: its main thread's exit is done
      if (!parent_alive(parent)) {
        client.lose(fmt::format("the engine process (pid {}) exited", parent));
      } else {
        spdlog::info("stopping (asked by the engine process)");
        server.shutdown_gracefully();
      }
    }
  });
  client.ready(server.port());
  spdlog::debug("listening on http://{}:{} (pid {})", options.host, server.port(), getpid());
  server.run();
  done = true;
  signals.join();
  if (const auto failure = engine_failure()) {
    spdlog::critical("the engine failed ({}): exiting with status 1", *failure);
    spdlog::default_logger()->flush();
    std::_Exit(1);
  }
  set_engine_failure_handler(nullptr);
  return 0;  // the server goes first, then the client
}

}  // namespace moeserve

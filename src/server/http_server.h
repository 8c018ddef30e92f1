// HttpServer: moeserve's OpenAI-compatible HTTP/1.1 front end (Boost.Asio + Beast). One
// io_context runs on the thread that calls run(): accepting, reading and writing bytes, checking
// the API key from the headers, and answering the routes that need no work (health, models,
// metrics, ...) all happen there without blocking, so thousands of idle or streaming connections
// cost a socket and a small session each, never a thread. The CPU work of a request — parsing its
// JSON body, rendering the chat template, tokenizing — runs on a bounded pool of request workers
// (server/request_workers.h), so a 30 MB prompt delays only itself; a full pool queue answers 503.
// Generation happens on the engine's own thread behind EngineClient. Workers' results and
// engine outputs are posted back to the io thread.
//
//   HttpServer server(options, engine, registry);
//   MS_RETURN_IF_ERROR(server.start());  // binds; server.port() is the bound port
//   std::thread io([&] { server.run(); });
//   ...; server.stop(); io.join();
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "base/result.h"
#include "engine/engine_client.h"
#include "metrics/metrics_registry.h"
#include "server/errors.h"
#include "server/live_feed.h"
#include "server/server_options.h"

namespace moeserve {

class ApiRouter;
class HttpSession;
class IoDispatcher;
class RequestWorkers;

class HttpServer {
 public:
  // live: what the live page's stream reads (server/live_feed.h); unused with enable_webui off.
  HttpServer(ServerOptions options, EngineClient& engine, MetricsRegistry& metrics, LiveSources live = {});
  // Stops the server, then waits for the request workers (a request being tokenized finishes;
  // those still queued are dropped). The engine must outlive the server.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Loads the chat template, binds host:port and starts listening. Errors: an unparsable
  // template, an address in use, an unresolvable host.
  Status start();
  // Serves until stop(); call once, after start(), on the thread that should run the io loop.
  void run();
  // Stops accepting, aborts every in-flight request (their engine requests are aborted) and
  // closes every connection; run() then returns. Thread-safe and idempotent; when run() is
  // active on another thread, returns once the shutdown has been carried out there.
  void stop();
  // For the serve command: SIGINT/SIGTERM then shut down gracefully on the io thread (stop
  // accepting, close idle connections, give requests in flight options.shutdown_timeout_s to
  // finish, end the rest with a 503 error — a stream with an error event and [DONE] — then
  // stop(), so run() returns and the caller can stop the engine and exit 0). A second signal
  // ends the requests in flight at once. Call after start(), before run().
  void stop_on_signals();
  // What stop_on_signals does on a signal, for a caller that watches signals itself (an
  // API-server process: SIGTERM from the engine process). Thread-safe; a second call ends the
  // requests in flight at once.
  void shutdown_gracefully();
  // The engine cannot go on (runtime/engine_failure.h): every request in flight ends with 503 and
  // `reason` (a stream: an error event, then [DONE]), /health answers 503 for kFailureGrace (load
  // balancers see it), and the server stops once those answers are out, so run() returns.
  // Thread-safe.
  void end_for_engine_failure(const std::string& reason);
  int port() const { return port_; }
  // Open live-page streams (/live) as of the feed's last tick; 0 with the web UI off.
  size_t live_subscribers() const { return live_feed_ ? live_feed_->num_subscribers() : 0; }
  // Live-stream events dropped for clients that did not keep up (server/live_feed.h).
  uint64_t live_events_dropped() const { return live_feed_ ? live_feed_->events_dropped() : 0; }

 private:
  void accept();
  void on_accept_error(const boost::system::error_code& ec);
  void shutdown_on_io_thread();
  // Graceful shutdown (io thread): wait for busy sessions, end the rest, wait for their bytes.
  void begin_graceful_shutdown();
  void wait_for_requests(std::chrono::steady_clock::time_point deadline);
  void end_requests(const ApiError& error);
  void wait_for_connections(std::chrono::steady_clock::time_point deadline);
  std::vector<std::shared_ptr<HttpSession>> live_sessions() const;

  ServerOptions options_;
  EngineClient& engine_;
  MetricsRegistry& metrics_;
  boost::asio::io_context io_{1};
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  boost::asio::steady_timer accept_retry_{io_};
  boost::asio::steady_timer drain_timer_{io_};
  bool draining_ = false;  // io thread only
  static constexpr std::chrono::seconds kFailureGrace{2};
  std::chrono::steady_clock::time_point stop_not_before_{};  // io thread only
  boost::asio::signal_set signals_{io_};
  std::shared_ptr<IoDispatcher> dispatcher_;
  std::unique_ptr<ApiRouter> router_;
  std::unique_ptr<RequestWorkers> workers_;  // stopped (joined) in the destructor, before router_ goes
  LiveSources live_sources_;
  std::unique_ptr<LiveFeed> live_feed_;  // null with the web UI off
  // Live connections, touched on the io thread only.
  std::unordered_map<HttpSession*, std::weak_ptr<HttpSession>> sessions_;
  // accept() failures in the current run of them (io thread only): all, and those not logged.
  int64_t accept_failures_ = 0;
  int64_t accept_failures_unlogged_ = 0;
  std::chrono::steady_clock::time_point accept_failure_logged_at_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stopped_{false};
  int port_ = 0;
};

}  // namespace moeserve

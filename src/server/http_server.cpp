// HttpServer: listener, session registry and shutdown.
#include "server/http_server.h"

#include <algorithm>
#include <csignal>
#include <future>

#include <sys/socket.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "server/api_router.h"
#include "server/errors.h"
#include "server/http_session.h"
#include "server/io_dispatcher.h"
#include "server/request_workers.h"

namespace moeserve {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
constexpr std::chrono::milliseconds kAcceptRetry(100);
}  // namespace

HttpServer::HttpServer(ServerOptions options, EngineClient& engine, MetricsRegistry& metrics, LiveSources live)
    : options_(std::move(options)), engine_(engine), metrics_(metrics),
      dispatcher_(std::make_shared<IoDispatcher>(io_)), live_sources_(std::move(live)) {}

HttpServer::~HttpServer() {
  stop();
  dispatcher_->close();
  if (workers_) workers_->stop();
}

Status HttpServer::start() {
  MS_ASSIGN_OR_RETURN(router_, ApiRouter::create(options_, engine_, metrics_, dispatcher_));
  RequestWorkers::Limits limits;
  limits.num_threads = options_.request_threads > 0 ? options_.request_threads : RequestWorkers::default_num_threads();
  limits.max_queued = options_.request_queue_limit;
  limits.max_queued_large = options_.large_request_queue_limit;
  workers_ = std::make_unique<RequestWorkers>(limits);
  spdlog::debug("{} request workers; up to {} requests may wait for one ({} of 1 MiB or more)",
                workers_->limits().num_threads, limits.max_queued, limits.max_queued_large);
  boost::system::error_code ec;
  tcp::resolver resolver(io_);
  auto endpoints = resolver.resolve(options_.host, std::to_string(options_.port), tcp::resolver::passive, ec);
  if (ec || endpoints.empty()) return make_error("cannot resolve --host {}: {}", options_.host, ec.message());
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && options_.reuse_port) {
    const int on = 1;
    if (setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
      ec.assign(errno, boost::system::system_category());
    }
  }
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error("cannot listen on --host {} --port {}: {}", options_.host, options_.port, ec.message());
  port_ = acceptor_.local_endpoint().port();
  if (options_.enable_webui) {
    Counter& push_seconds = metrics_.counter(
        "moeserve:live_push_seconds",
        "Time the server's io thread spent on the live page's ticks: snapshots, events, queueing (/live).");
    live_feed_ = std::make_unique<LiveFeed>(io_, engine_, live_sources_, options_.live_interval_s, &push_seconds);
    live_feed_->start();
  }
  accept();
  return ok_status();
}

void HttpServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (stopped_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      // Out of file descriptors and the like: back off instead of spinning on the error.
      on_accept_error(ec);
      accept_retry_.expires_after(kAcceptRetry);
      accept_retry_.async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec && !stopped_) accept();
      });
      return;
    }
    if (accept_failures_ > 0) {
      spdlog::info("accepting connections again after {} failed attempts", accept_failures_);
      accept_failures_ = accept_failures_unlogged_ = 0;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // SSE chunks must not wait for Nagle
    auto session = std::make_shared<HttpSession>(std::move(socket), *router_, *workers_, dispatcher_, options_,
                                                 live_feed_.get(),
                                                 [this](HttpSession* closed) { sessions_.erase(closed); });
    sessions_.emplace(session.get(), session);
    session->start();
    accept();
  });
}

// The first failure of a run is logged at once; while they go on (every 100 ms when file
// descriptors ran out), one line per interval says how many there were since the last one.
void HttpServer::on_accept_error(const boost::system::error_code& ec) {
  const auto now = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(options_.accept_error_log_interval_s);
  if (accept_failures_++ == 0) {
    spdlog::warn("accept failed: {} (retrying every {} ms; repeats are reported at most every {:g} s)", ec.message(),
                 kAcceptRetry.count(), options_.accept_error_log_interval_s);
  } else if (now - accept_failure_logged_at_ >= interval) {
    spdlog::warn("accept failed: {} ({} more failures since the last report)", ec.message(),
                 accept_failures_unlogged_ + 1);
  } else {
    ++accept_failures_unlogged_;
    return;
  }
  accept_failure_logged_at_ = now;
  accept_failures_unlogged_ = 0;
}

void HttpServer::stop_on_signals() {
  boost::system::error_code ignored;
  signals_.add(SIGINT, ignored);
  signals_.add(SIGTERM, ignored);
  signals_.async_wait([this](boost::system::error_code ec, int signal_number) {
    if (ec) return;
    spdlog::info("received signal {}: stopping the server", signal_number);
    begin_graceful_shutdown();
  });
}

std::vector<std::shared_ptr<HttpSession>> HttpServer::live_sessions() const {
  std::vector<std::shared_ptr<HttpSession>> live;
  for (const auto& [raw, weak] : sessions_) {
    if (auto session = weak.lock()) live.push_back(std::move(session));
  }
  return live;
}

void HttpServer::end_for_engine_failure(const std::string& reason) {
  asio::post(io_, [this, reason] {
    draining_ = true;
    stop_not_before_ = std::chrono::steady_clock::now() + kFailureGrace;
    end_requests(service_unavailable("the engine failed: " + reason));
  });
}

void HttpServer::shutdown_gracefully() {
  asio::post(io_, [this] { begin_graceful_shutdown(); });
}

void HttpServer::begin_graceful_shutdown() {
  if (draining_) return end_requests(service_unavailable("the server is shutting down"));  // a second signal
  draining_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  // A second signal ends what is in flight at once.
  signals_.async_wait([this](boost::system::error_code ec, int) {
    if (!ec) begin_graceful_shutdown();
  });
  for (auto& session : live_sessions()) session->stop_keep_alive();  // idle ones close now
  // Past ~292 years the deadline in nanoseconds overflows (into the past: requests would be cut
  // at once); a billion seconds is "as long as it takes".
  const auto timeout = std::chrono::duration<double>(std::min(options_.shutdown_timeout_s, 1e9));
  if (options_.shutdown_timeout_s > 0) {
    spdlog::info("waiting up to {:g} s for the requests in flight", options_.shutdown_timeout_s);
  }
  wait_for_requests(std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
}

void HttpServer::wait_for_requests(std::chrono::steady_clock::time_point deadline) {
  bool busy = false;
  for (auto& session : live_sessions()) busy = busy || session->busy();
  if (!busy || std::chrono::steady_clock::now() >= deadline) {
    return end_requests(service_unavailable("the server is shutting down"));
  }
  drain_timer_.expires_after(std::chrono::milliseconds(20));
  drain_timer_.async_wait([this, deadline](boost::system::error_code ec) {
    if (!ec) wait_for_requests(deadline);
  });
}

void HttpServer::end_requests(const ApiError& error) {
  drain_timer_.cancel();
  for (auto& session : live_sessions()) session->end_for_shutdown(error);
  // Their last bytes (and the clients' closes) get a moment before everything is torn down.
  wait_for_connections(std::max(stop_not_before_, std::chrono::steady_clock::now() + std::chrono::seconds(3)));
}

void HttpServer::wait_for_connections(std::chrono::steady_clock::time_point deadline) {
  const auto now = std::chrono::steady_clock::now();
  if ((live_sessions().empty() && now >= stop_not_before_) || now >= deadline) return stop();
  drain_timer_.expires_after(std::chrono::milliseconds(20));
  drain_timer_.async_wait([this, deadline](boost::system::error_code ec) {
    if (!ec) wait_for_connections(deadline);
  });
}

void HttpServer::run() {
  running_ = true;
  io_.run();
  running_ = false;
}

void HttpServer::shutdown_on_io_thread() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  drain_timer_.cancel();
  signals_.cancel(ignored);
  // close() erases from sessions_ through the close hook: iterate over a copy.
  std::vector<std::shared_ptr<HttpSession>> live;
  for (auto& [raw, weak] : sessions_) {
    if (auto session = weak.lock()) live.push_back(std::move(session));
  }
  for (auto& session : live) session->close();
  sessions_.clear();
  if (live_feed_) live_feed_->stop();
  dispatcher_->close();
  io_.stop();
}

void HttpServer::stop() {
  if (stopped_.exchange(true)) return;
  if (running_ && !io_.get_executor().running_in_this_thread()) {
    std::promise<void> done;
    asio::post(io_, [this, &done] {
      shutdown_on_io_thread();
      done.set_value();
    });
    // run() returns only through shutdown_on_io_thread, so the wait ends; the bound is a guard.
    done.get_future().wait_for(std::chrono::seconds(30));
    return;
  }
  shutdown_on_io_thread();
}

}  // namespace moeserve

// HttpSession: one client connection. It reads requests with Beast's parser (keep-alive,
// pipelining, a body limit answered with 413, `Expect: 100-continue`), checks the API key as soon
// as the headers are in (a refused request's large body is never read), answers what needs no
// work at once and hands the rest to the request workers (ApiRouter::route on a worker thread;
// the outcome comes back on the io thread), and writes plain byte strings back — a complete
// response, or an SSE stream in chunked encoding fed by a GenerationJob. While a request is with
// the workers or generating it watches the socket for the client going away, and then drops the
// queued work or aborts the job's engine requests. GET /live turns the connection into the live
// page's data stream (server/live_feed.h): the feed queues its events here until the client
// leaves, and an event that would take the unsent bytes past kLiveBacklogBytes is dropped.
// Invariant: at most one request is in progress per session (work_ non-null while it is with the
// workers, then job_ non-null while its generation's response is unfinished; never both; or
// live_ for the rest of the connection), and at most one write is outstanding (writing_).
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "server/api_router.h"
#include "server/generation_job.h"
#include "server/io_dispatcher.h"
#include "server/live_feed.h"
#include "server/request_workers.h"

namespace moeserve {

// A request handed to the workers; `cancelled` (set on the io thread when the client left or the
// server is stopping) makes a worker skip it.
struct RequestWork {
  std::atomic<bool> cancelled{false};
};

class HttpSession : public std::enable_shared_from_this<HttpSession>, public JobSink, public LiveSubscriber {
 public:
  using CloseHook = std::function<void(HttpSession*)>;
  // Unsent bytes a live stream may hold before its events are dropped (a client that stopped
  // reading costs this much memory at most).
  static constexpr size_t kLiveBacklogBytes = size_t{1} << 20;
  // live_feed: null when the web UI is off.
  HttpSession(boost::asio::ip::tcp::socket socket, ApiRouter& router, RequestWorkers& workers,
              std::shared_ptr<IoDispatcher> dispatcher, const ServerOptions& options, LiveFeed* live_feed,
              CloseHook on_close);

  void start();
  // Aborts any generation in flight and closes the connection (server stop). Idempotent.
  void close();

  // Shutdown: whether a request is in progress; no further request on this connection (an idle
  // one closes now); end the request in flight with `error` (a stream: an error event, then
  // [DONE]; otherwise the error response) and close.
  bool busy() const { return job_ != nullptr || work_ != nullptr; }
  void stop_keep_alive();
  void end_for_shutdown(const ApiError& error);
  void job_stream_data(std::string data) override;
  void job_finished(std::optional<HttpResponse> response) override;
  bool live_event(const std::string& event) override;

 private:
  void read_header();
  void on_header(boost::beast::error_code ec);
  void on_read_error(boost::beast::error_code ec);
  void read_body();
  void on_body(boost::beast::error_code ec);
  void handle_request();
  // The request's turn on a worker: its outcome comes back through on_routed (io thread).
  void hand_to_workers(HttpRequest request);
  void on_routed(const std::shared_ptr<RequestWork>& work, RouteOutcome outcome);
  void answer(RouteOutcome outcome);
  // Drops the request's work if a worker has not taken it yet (and ignores its outcome if one has).
  void cancel_work();
  void start_job(std::shared_ptr<GenerationJob> job, bool http11);
  void start_live();
  void end_live();  // the last chunk, then close
  void respond_and_close(const HttpResponse& response);
  // Queues a complete response to the current request: without its body for HEAD, and with its
  // log line (a refusal: 4xx at info, 5xx at warning; otherwise at debug).
  void send_response(const HttpResponse& response);
  void log_response(int status, const std::string& error_message) const;

  void send(std::string bytes);
  void write_next();
  void on_write(boost::beast::error_code ec);
  void finish_response_if_written();
  void linger_close();
  void drain_input();

  void watch_disconnect();
  void on_readable(boost::beast::error_code ec, uint64_t generation);

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  ApiRouter& router_;
  RequestWorkers& workers_;
  std::shared_ptr<IoDispatcher> dispatcher_;
  const ServerOptions& options_;
  LiveFeed* live_feed_;
  CloseHook on_close_;

  // Refused from its headers (no API key), answered once its small body has been read and dropped.
  std::optional<ApiError> refusal_;
  std::shared_ptr<RequestWork> work_;  // the request, while it is with the workers
  std::shared_ptr<GenerationJob> job_;
  std::deque<std::string> outbox_;
  std::string writing_buffer_;
  std::string linger_buffer_;
  bool writing_ = false;
  bool live_ = false;  // streaming /live
  bool keep_alive_ = false;
  bool chunked_ = false;
  bool response_complete_ = false;  // the whole response is queued; next: drain, then read or close
  bool closed_ = false;
  // The request being answered, for HEAD and the log line ("-" until its header is read).
  std::string method_ = "-";
  std::string path_ = "-";
  unsigned http_version_ = 11;
  bool head_ = false;
  std::string peer_;  // "ADDRESS:PORT" of the client
  uint64_t watch_generation_ = 0;  // a watch completion with an older generation is stale
};

}  // namespace moeserve

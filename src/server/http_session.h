// HttpSession: one client connection. It reads requests with Beast's parser (keep-alive,
// pipelining, a body limit answered with 413, `Expect: 100-continue`), hands each to the
// ApiRouter, and writes plain byte strings back — a complete response, or an SSE stream in
// chunked encoding fed by a GenerationJob. While a generation runs it watches the socket for
// the client going away and then aborts the job's engine requests.
// Invariant: at most one request is in progress per session (job_ non-null only while its
// response is unfinished), and at most one write is outstanding (writing_).
#pragma once

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

namespace moeserve {

class HttpSession : public std::enable_shared_from_this<HttpSession>, public JobSink {
 public:
  using CloseHook = std::function<void(HttpSession*)>;
  HttpSession(boost::asio::ip::tcp::socket socket, ApiRouter& router, const ServerOptions& options, CloseHook on_close);

  void start();
  // Aborts any generation in flight and closes the connection (server stop). Idempotent.
  void close();

  // Shutdown: whether a request is in progress; no further request on this connection (an idle
  // one closes now); end the request in flight with `error` (a stream: an error event, then
  // [DONE]; otherwise the error response) and close.
  bool busy() const { return job_ != nullptr; }
  void stop_keep_alive();
  void end_for_shutdown(const ApiError& error);
  void job_stream_data(std::string data) override;
  void job_finished(std::optional<HttpResponse> response) override;

 private:
  void read_header();
  void on_header(boost::beast::error_code ec);
  void on_read_error(boost::beast::error_code ec);
  void read_body();
  void on_body(boost::beast::error_code ec);
  void handle_request();
  void start_job(std::shared_ptr<GenerationJob> job, bool http11);
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
  const ServerOptions& options_;
  CloseHook on_close_;

  std::shared_ptr<GenerationJob> job_;
  std::deque<std::string> outbox_;
  std::string writing_buffer_;
  std::string linger_buffer_;
  bool writing_ = false;
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

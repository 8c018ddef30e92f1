// HttpSession: request reading, header-time API key check, handing requests to the workers,
// response/stream writing, and client-disconnect detection.
#include "server/http_session.h"

#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/errors.h"
#include "server/openai_responses.h"

namespace moeserve {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

namespace {
constexpr uint32_t kHeaderLimit = 64 * 1024;
// A request refused from its headers whose declared body is at most this big has the body read
// and dropped (never parsed), so that the connection stays usable; a larger, chunked or
// `Expect: 100-continue` body is never read: the answer goes out at once and the connection closes.
constexpr uint64_t kDroppableBodyBytes = 64 * 1024;

// Client-controlled text for a log line: control bytes escaped (no forged lines), and cut short.
std::string loggable(std::string_view text, size_t max_bytes) {
  std::string out;
  for (const char c : text.substr(0, max_bytes)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  if (text.size() > max_bytes) out += fmt::format("... ({} bytes)", text.size());
  return out;
}

std::string peer_name(const asio::ip::tcp::socket& socket) {
  beast::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "-";
  const auto address = endpoint.address();
  return address.is_v6() ? fmt::format("[{}]:{}", address.to_string(), endpoint.port())
                         : fmt::format("{}:{}", address.to_string(), endpoint.port());
}

}  // namespace

HttpSession::HttpSession(asio::ip::tcp::socket socket, ApiRouter& router, RequestWorkers& workers,
                         std::shared_ptr<IoDispatcher> dispatcher, const ServerOptions& options, LiveFeed* live_feed,
                         CloseHook on_close)
    : stream_(std::move(socket)), router_(router), workers_(workers), dispatcher_(std::move(dispatcher)),
      options_(options), live_feed_(live_feed), on_close_(std::move(on_close)) {
  peer_ = peer_name(stream_.socket());
}

void HttpSession::start() { read_header(); }

void HttpSession::close() {
  if (closed_) return;
  closed_ = true;
  cancel_work();
  if (job_) {
    job_->cancel(router_.engine());
    job_.reset();
  }
  beast::error_code ignored;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  stream_.socket().close(ignored);
  if (on_close_) on_close_(this);
}

void HttpSession::read_header() {
  if (closed_) return;
  parser_.emplace();
  method_ = path_ = "-";
  http_version_ = 11;
  head_ = false;
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(options_.max_body_bytes);
  stream_.expires_after(std::chrono::seconds(options_.idle_timeout_seconds));
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
}

void HttpSession::on_header(beast::error_code ec) {
  if (closed_) return;
  // The start line is in the message as soon as it parsed, even when a later check (the body
  // limit) failed the header.
  if (const auto& message = parser_->get(); !message.method_string().empty()) {
    method_ = std::string(message.method_string());
    const std::string_view target(message.target().data(), message.target().size());
    path_ = std::string(target.substr(0, target.find('?')));
    http_version_ = message.version();
    head_ = message.method() == http::verb::head;
  }
  if (ec == http::error::header_limit) return respond_and_close(error_response(bad_request("request headers too large")));
  // Beast checks a declared Content-Length against the body limit while reading the header.
  if (ec == http::error::body_limit) return respond_and_close(error_response(payload_too_large(options_.max_body_bytes)));
  if (ec) return on_read_error(ec);
  const auto& header = parser_->get();
  const auto length = parser_->content_length();
  if (length && *length > options_.max_body_bytes) {
    return respond_and_close(error_response(payload_too_large(options_.max_body_bytes)));
  }
  const bool expects_continue = beast::iequals(header[http::field::expect], "100-continue") && !parser_->is_done();
  // The API key is checked before any of the body is read.
  if (auto error = router_.authorize(path_, std::string(header[http::field::authorization]))) {
    if (!parser_->is_done() && (expects_continue || !length || *length > kDroppableBodyBytes)) {
      return respond_and_close(error_response(*error));
    }
    refusal_ = std::move(error);  // answered by handle_request once the small body is dropped
  } else if (expects_continue) {
    send("HTTP/1.1 100 Continue\r\n\r\n");
  }
  read_body();
}

// A malformed request gets a 400; a closed, reset or idle connection just closes.
void HttpSession::on_read_error(beast::error_code ec) {
  const bool protocol_error = ec.category() == http::make_error_code(http::error::bad_method).category() &&
                              ec != http::error::end_of_stream && ec != http::error::partial_message;
  if (protocol_error) return respond_and_close(error_response(bad_request("malformed HTTP request: " + ec.message())));
  close();
}

void HttpSession::read_body() {
  if (parser_->is_done()) return on_body({});
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
}

void HttpSession::on_body(beast::error_code ec) {
  if (closed_) return;
  if (ec == http::error::body_limit) return respond_and_close(error_response(payload_too_large(options_.max_body_bytes)));
  if (ec) return on_read_error(ec);
  stream_.expires_never();
  handle_request();
}

void HttpSession::handle_request() {
  auto& message = parser_->get();
  keep_alive_ = message.keep_alive();
  if (refusal_) {
    const ApiError error = std::move(*refusal_);
    refusal_.reset();
    return answer(respond(error_response(error)));
  }
  HttpRequest request;
  request.method = method_;
  request.path = path_;
  request.body = std::move(message.body());
  request.authorization = std::string(message[http::field::authorization]);
  if (std::optional<RouteOutcome> outcome = router_.route_at_once(request)) return answer(std::move(*outcome));
  hand_to_workers(std::move(request));
}

namespace {

// ApiRouter::route on a worker, where an exception (out of memory, a bug) must become a 500 for
// this request instead of ending the process.
RouteOutcome route_on_worker(ApiRouter& router, const HttpRequest& request) {
  try {
    return router.route(request);
  } catch (const std::exception& error) {
    spdlog::error("{} {}: {}", request.method, request.path, error.what());
    return respond(error_response(internal_error(std::string("internal error: ") + error.what())));
  }
}

}  // namespace

void HttpSession::hand_to_workers(HttpRequest request) {
  const RequestWorkers::Lane lane = RequestWorkers::lane_for(request.body.size());
  auto work = std::make_shared<RequestWork>();
  std::weak_ptr<HttpSession> weak_self = shared_from_this();
  auto task = [router = &router_, dispatcher = dispatcher_, hook = &options_.test_worker_hook, weak_self, work,
               request = std::move(request)] {
    if (work->cancelled) return;
    if (*hook) (*hook)(request.path, request.body);
    RouteOutcome outcome = route_on_worker(*router, request);
    // A job whose session has gone is dropped unstarted: nothing of it reached the engine.
    dispatcher->post([weak_self, work, outcome = std::move(outcome)]() mutable {
      if (auto self = weak_self.lock()) self->on_routed(work, std::move(outcome));
    });
  };
  if (!workers_.submit(lane, std::move(task))) {
    return answer(respond(router_.busy_response(lane == RequestWorkers::Lane::kLarge)));
  }
  work_ = std::move(work);
  watch_disconnect();
}

void HttpSession::on_routed(const std::shared_ptr<RequestWork>& work, RouteOutcome outcome) {
  if (closed_ || work != work_) return;  // the client left, or a shutdown answered the request
  work_.reset();
  ++watch_generation_;  // the pending disconnect watch is now stale
  answer(std::move(outcome));
}

void HttpSession::answer(RouteOutcome outcome) {
  if (outcome.job) return start_job(std::move(outcome.job), http_version_ >= 11);
  if (outcome.live) return start_live();
  send_response(outcome.response);
  response_complete_ = true;
  finish_response_if_written();
}

void HttpSession::cancel_work() {
  if (!work_) return;
  work_->cancelled = true;
  work_.reset();
}

void HttpSession::start_job(std::shared_ptr<GenerationJob> job, bool http11) {
  job_ = std::move(job);
  std::shared_ptr<JobSink> sink = shared_from_this();
  if (auto error = job_->start(router_.engine(), sink)) {
    job_.reset();
    send_response(error_response(*error));
    response_complete_ = true;
    return finish_response_if_written();
  }
  if (job_->stream()) {
    // HTTP/1.0 has no chunked encoding: the stream ends when the connection closes.
    chunked_ = http11;
    if (!chunked_) keep_alive_ = false;
    log_response(200, "");
    send(serialize_stream_head(chunked_, options_.response_headers));
  }
  if (live_feed_) live_feed_->track(job_);
  watch_disconnect();
}

void HttpSession::start_live() {
  if (live_feed_ == nullptr || head_) {
    // HEAD: the stream's head alone; no feed (the web UI is off): the router answered 404 already.
    HttpResponse response = text_response(200, "text/event-stream; charset=utf-8", "");
    response.headers.emplace_back("Cache-Control", "no-cache");
    send_response(response);
    response_complete_ = true;
    return finish_response_if_written();
  }
  live_ = true;
  chunked_ = http_version_ >= 11;
  keep_alive_ = false;  // the stream lasts as long as the connection
  log_response(200, "");
  send(serialize_stream_head(chunked_, options_.response_headers));
  live_feed_->subscribe(std::static_pointer_cast<LiveSubscriber>(shared_from_this()));
  watch_disconnect();
}

bool HttpSession::live_event(const std::string& event) {
  if (closed_ || !live_) return false;
  size_t backlog = writing_ ? writing_buffer_.size() : 0;
  for (const std::string& piece : outbox_) backlog += piece.size();
  if (backlog + event.size() > kLiveBacklogBytes) return false;
  send(chunked_ ? serialize_chunk(event) : event);
  return true;
}

void HttpSession::end_live() {
  live_ = false;
  ++watch_generation_;  // the pending disconnect watch is now stale
  if (chunked_) send(kLastChunk);
  chunked_ = false;
  keep_alive_ = false;
  response_complete_ = true;
  finish_response_if_written();
}

void HttpSession::stop_keep_alive() {
  keep_alive_ = false;
  if (live_) return end_live();
  if (!busy() && !writing_ && outbox_.empty() && !response_complete_) close();  // waiting for a request
}

void HttpSession::end_for_shutdown(const ApiError& error) {
  if (closed_) return;
  keep_alive_ = false;
  if (live_) return end_live();
  if (work_) {  // not yet parsed: no stream has started, so the error is a plain response
    cancel_work();
    ++watch_generation_;
    send_response(error_response(error));
    response_complete_ = true;
    return finish_response_if_written();
  }
  if (!job_) {
    if (writing_ || !outbox_.empty()) return;  // a response still going out: closes after it
    return close();
  }
  job_->cancel(router_.engine());
  const bool stream = job_->stream();
  job_.reset();
  ++watch_generation_;  // the pending disconnect watch is now stale
  if (stream) {
    log_response(error.status, error.message);
    const std::string tail = sse_event(nlohmann::json::parse(error.to_json())) + kSseDone;
    send(chunked_ ? serialize_chunk(tail) + kLastChunk : tail);
    chunked_ = false;
  } else {
    send_response(error_response(error));
  }
  response_complete_ = true;
  finish_response_if_written();
}

void HttpSession::job_stream_data(std::string data) {
  if (closed_ || data.empty()) return;
  send(chunked_ ? serialize_chunk(data) : std::move(data));
}

void HttpSession::job_finished(std::optional<HttpResponse> response) {
  if (closed_) return;
  job_.reset();
  ++watch_generation_;  // the pending watch, if any, is now stale
  if (response) {
    send_response(*response);
  } else if (chunked_) {
    send(kLastChunk);
  }
  chunked_ = false;
  response_complete_ = true;
  finish_response_if_written();
}

void HttpSession::respond_and_close(const HttpResponse& response) {
  keep_alive_ = false;
  send_response(response);
  response_complete_ = true;
  finish_response_if_written();
}

void HttpSession::send_response(const HttpResponse& response) {
  log_response(response.status, response.error_message);
  send(serialize_response(response, keep_alive_, head_, options_.response_headers));
}

// The access-log line of a response, as uvicorn's with the error message after it:
//   127.0.0.1:50312 "POST /v1/completions HTTP/1.1" 400 Bad Request: `temperature` must be ...
// A refusal is logged whatever --disable-log-requests says (that flag is about the per-request
// generation lines, as in vLLM): 4xx at info, 5xx at warning. Answered requests at debug.
void HttpSession::log_response(int status, const std::string& error_message) const {
  const auto level = status >= 500 ? spdlog::level::warn : status >= 400 ? spdlog::level::info : spdlog::level::debug;
  if (!spdlog::should_log(level)) return;
  const auto reason = http::obsolete_reason(static_cast<http::status>(status));
  std::string line = fmt::format("{} \"{} {} HTTP/{}.{}\" {} {}", peer_, loggable(method_, 32), loggable(path_, 256),
                                 http_version_ / 10, http_version_ % 10, status,
                                 std::string_view(reason.data(), reason.size()));
  if (status >= 400) line += ": " + loggable(error_message, 1024);
  spdlog::log(level, "{}", line);
}

void HttpSession::send(std::string bytes) {
  outbox_.push_back(std::move(bytes));
  if (!writing_) write_next();
}

void HttpSession::write_next() {
  // Everything queued goes out in one write: a burst of SSE chunks costs one syscall.
  writing_buffer_.clear();
  for (std::string& piece : outbox_) writing_buffer_ += piece;
  outbox_.clear();
  writing_ = true;
  asio::async_write(stream_, asio::buffer(writing_buffer_),
                    [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
}

void HttpSession::on_write(beast::error_code ec) {
  writing_ = false;
  if (closed_) return;
  if (ec) return close();  // the client went away: close() aborts any generation
  if (!outbox_.empty()) return write_next();
  finish_response_if_written();
}

void HttpSession::finish_response_if_written() {
  if (!response_complete_ || writing_ || !outbox_.empty() || closed_) return;
  response_complete_ = false;
  if (!keep_alive_) return linger_close();
  read_header();
}

// Closing with unread request bytes in the kernel buffer makes the kernel send a reset, which
// can destroy the response (a 413) before the client reads it. So: half-close, then read and
// discard for a moment until the client closes its side.
void HttpSession::linger_close() {
  if (closed_) return;
  beast::error_code ignored;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  stream_.expires_after(std::chrono::seconds(2));
  drain_input();
}

void HttpSession::drain_input() {
  linger_buffer_.resize(16 * 1024);
  stream_.async_read_some(asio::buffer(linger_buffer_), [self = shared_from_this()](beast::error_code ec, size_t) {
    if (ec) return self->close();
    self->drain_input();
  });
}

void HttpSession::watch_disconnect() {
  const uint64_t generation = ++watch_generation_;
  stream_.socket().async_wait(asio::ip::tcp::socket::wait_read,
                              [self = shared_from_this(), generation](beast::error_code ec) {
                                self->on_readable(ec, generation);
                              });
}

void HttpSession::on_readable(beast::error_code ec, uint64_t generation) {
  if (closed_ || generation != watch_generation_ || !(busy() || live_) || ec == asio::error::operation_aborted) return;
  beast::error_code available_ec;
  const size_t available = stream_.socket().available(available_ec);
  // Readable with nothing to read is the peer's FIN; an error is a reset. Bytes waiting are a
  // pipelined request, read once this response is done.
  if (ec || available_ec || available == 0) {
    if (!options_.disable_log_requests) {
      if (live_) {
        spdlog::debug("{} \"{} {}\": live page client disconnected", peer_, loggable(method_, 32),
                      loggable(path_, 256));
      } else if (job_) {
        spdlog::info("request {}: client disconnected, aborting", job_->id());
      } else {
        spdlog::info("{} \"{} {}\": client disconnected before the request was handled, dropping it", peer_,
                     loggable(method_, 32), loggable(path_, 256));
      }
    }
    close();
  }
}

}  // namespace moeserve

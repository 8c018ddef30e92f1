#include "cli/bench_serve_client.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <string_view>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

namespace moeserve::cli {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// HTTP/1.1 with keep-alive, as vLLM's `bench serve` drives any OpenAI-compatible server: a
// request states its length; a response is framed by Content-Length, chunked transfer encoding,
// or (HTTP/1.0, or neither header) the connection closing.
std::string http_request(const std::string& method, const std::string& host, const std::string& path,
                         const std::string& body, bool keep_alive, const std::string& api_key) {
  std::string out = method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\n";
  if (!api_key.empty()) out += "Authorization: Bearer " + api_key + "\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  if (!body.empty()) out += "Content-Type: application/json\r\n";
  if (!body.empty() || method == "POST") out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return out + "\r\n" + body;
}

// An HTTP/1.1 response read incrementally: feed() takes the bytes as they arrive and appends the
// decoded body bytes (chunk framing removed) to `body`.
class ResponseReader {
 public:
  int status() const { return status_; }
  bool done() const { return state_ == State::kDone; }
  bool head_done() const { return state_ != State::kHead; }
  // The connection may carry the next request once this response is done.
  bool reusable() const { return done() && !close_; }
  // The server closed the connection: the end of a body that runs to the close, else an error.
  Status on_eof() {
    if (state_ == State::kUntilClose) {
      state_ = State::kDone;
      return ok_status();
    }
    if (state_ == State::kDone) return ok_status();
    return make_error("the server closed the connection in the middle of a response");
  }

  Status feed(std::string_view data, std::string& body) {
    raw_.append(data);
    while (true) {
      switch (state_) {
        case State::kHead: {
          const size_t end = raw_.find("\r\n\r\n");
          if (end == std::string::npos) {
            if (raw_.size() > 65536) return make_error("response headers over 64 KiB");
            return ok_status();
          }
          MS_RETURN_IF_ERROR(parse_head(raw_.substr(0, end)));
          raw_.erase(0, end + 4);
          break;
        }
        case State::kLength:
          if (!take_body(body)) return ok_status();
          state_ = State::kDone;
          break;
        case State::kUntilClose:
          body += raw_;
          raw_.clear();
          return ok_status();
        case State::kChunkSize: {
          const size_t end = raw_.find("\r\n");
          if (end == std::string::npos) return ok_status();
          const std::string line = raw_.substr(0, raw_.find_first_of(";\r"));  // chunk extensions ignored
          raw_.erase(0, end + 2);
          char* parsed_end = nullptr;
          const long long size = std::strtoll(line.c_str(), &parsed_end, 16);
          if (line.empty() || parsed_end != line.c_str() + line.size() || size < 0) {
            return make_error("malformed chunk size '{}'", line);
          }
          remaining_ = size;
          state_ = size == 0 ? State::kTrailer : State::kChunkData;
          break;
        }
        case State::kChunkData:
          if (!take_body(body)) return ok_status();
          state_ = State::kChunkEnd;
          break;
        case State::kChunkEnd:
          if (raw_.size() < 2) return ok_status();
          if (raw_.compare(0, 2, "\r\n") != 0) return make_error("a chunk does not end in CRLF");
          raw_.erase(0, 2);
          state_ = State::kChunkSize;
          break;
        case State::kTrailer: {  // trailer fields, then an empty line
          const size_t end = raw_.find("\r\n");
          if (end == std::string::npos) return ok_status();
          raw_.erase(0, end + 2);
          if (end == 0) state_ = State::kDone;
          break;
        }
        case State::kDone:
          return ok_status();
      }
    }
  }

 private:
  enum class State { kHead, kLength, kUntilClose, kChunkSize, kChunkData, kChunkEnd, kTrailer, kDone };

  // Moves up to remaining_ received bytes to `body`; true once remaining_ reached 0.
  bool take_body(std::string& body) {
    const size_t take = std::min<size_t>(raw_.size(), size_t(remaining_));
    body.append(raw_, 0, take);
    raw_.erase(0, take);
    remaining_ -= int64_t(take);
    return remaining_ == 0;
  }

  Status parse_head(const std::string& head) {
    const size_t line_end = std::min(head.find("\r\n"), head.size());
    const std::string status_line = head.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
      return make_error("not an HTTP response: '{}'", status_line.substr(0, 80));
    }
    status_ = std::atoi(status_line.c_str() + 9);
    close_ = status_line.rfind("HTTP/1.0", 0) == 0;
    bool chunked = false;
    int64_t length = -1;
    for (size_t at = line_end + 2; at < head.size();) {
      size_t end = head.find("\r\n", at);
      if (end == std::string::npos) end = head.size();
      const std::string field = head.substr(at, end - at);
      at = end + 2;
      const size_t colon = field.find(':');
      if (colon == std::string::npos) continue;
      std::string name = field.substr(0, colon), value = field.substr(colon + 1);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == "content-length") length = std::atoll(value.c_str());
      if (name == "transfer-encoding" && value.find("chunked") != std::string::npos) chunked = true;
      if (name == "connection" && value.find("close") != std::string::npos) close_ = true;
      if (name == "connection" && value.find("keep-alive") != std::string::npos) close_ = false;
    }
    if (chunked) {
      state_ = State::kChunkSize;
    } else if (length >= 0) {
      remaining_ = length;
      state_ = State::kLength;
    } else {
      state_ = State::kUntilClose;
      close_ = true;
    }
    return ok_status();
  }

  State state_ = State::kHead;
  int status_ = 0;
  bool close_ = false;
  int64_t remaining_ = 0;
  std::string raw_;  // received, not yet decoded
};

// Consumes complete SSE events ("data: ...\n\n") from `pending`, updating the record.
void consume_events(std::string& pending, RequestRecord& record, Clock::time_point start, double& last_token,
                    int& chunks) {
  // Events end at a blank line; servers may end lines with CRLF (SSE allows CR, LF or CRLF).
  // A CR at the very end may be half of a CRLF still coming: it waits.
  for (size_t cr = pending.find('\r'); cr != std::string::npos && cr + 1 < pending.size(); cr = pending.find('\r', cr)) {
    if (pending[cr + 1] == '\n') {
      pending.erase(cr, 1);
    } else {
      pending[cr] = '\n';
    }
  }
  size_t end;
  while ((end = pending.find("\n\n")) != std::string::npos) {
    const std::string event = pending.substr(0, end);
    pending.erase(0, end + 2);
    if (event.rfind("data: ", 0) != 0) continue;
    const std::string data = event.substr(6);
    if (data == "[DONE]") continue;
    const Json chunk = Json::parse(data, nullptr, false);
    if (chunk.is_discarded()) continue;
    if (chunk.contains("error")) {
      record.error = chunk["error"].value("message", data);
      continue;
    }
    if (chunk.contains("usage") && chunk["usage"].is_object()) {
      record.output_tokens = chunk["usage"].value("completion_tokens", record.output_tokens);
    }
    if (!chunk.contains("choices") || chunk["choices"].empty()) continue;
    const Json& choice = chunk["choices"][0];
    std::string piece = choice.contains("text") ? choice.value("text", "") : "";
    if (choice.contains("delta")) piece = choice["delta"].value("content", "");
    const double now = since(start);
    if (chunks == 0) {
      record.ttft = now;
    } else {
      record.itl.push_back(now - last_token);
    }
    last_token = now;
    ++chunks;
    record.text += piece;
  }
}

// Idle keep-alive connections, shared by the requests of one run (one io thread).
using ConnectionPool = std::vector<std::unique_ptr<tcp::socket>>;

asio::awaitable<RequestRecord> one_request(const BenchServeConfig& config, const tcp::resolver::results_type& endpoints,
                                           const BenchPrompt& prompt, ConnectionPool& pool) {
  RequestRecord record;
  record.prompt_tokens = static_cast<int>(prompt.prompt_ids.size());
  Json body = {{"model", config.model},         {"prompt", prompt.prompt_ids}, {"max_tokens", prompt.max_tokens},
               {"temperature", config.temperature}, {"stream", true},
               {"stream_options", {{"include_usage", true}}}, {"ignore_eos", config.ignore_eos}};
  if (config.top_p) body["top_p"] = *config.top_p;
  if (config.top_k) body["top_k"] = *config.top_k;
  if (config.min_p) body["min_p"] = *config.min_p;
  const std::string request =
      http_request("POST", config.host, config.endpoint, body.dump(), /*keep_alive=*/true, config.api_key);
  auto executor = co_await asio::this_coro::executor;
  std::unique_ptr<tcp::socket> socket;
  asio::steady_timer deadline(executor);
  deadline.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.timeout_seconds)));
  bool timed_out = false;
  deadline.async_wait([&](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    boost::system::error_code ignored;
    if (socket) socket->close(ignored);
  });
  const auto start = Clock::now();
  ResponseReader response;
  std::string decoded;
  double last_token = 0.0;
  int chunks = 0;
  // A pooled connection the server has closed since fails before any response byte: the request
  // then goes once more over a new connection.
  for (int attempt = 0; attempt < 2 && record.error.empty(); ++attempt) {
    const bool reused = attempt == 0 && !pool.empty();  // the retry takes a new connection
    if (reused) {
      socket = std::move(pool.back());
      pool.pop_back();
    } else {
      socket = std::make_unique<tcp::socket>(executor);
    }
    response = ResponseReader();
    decoded.clear();
    bool received = false;
    try {
      if (!reused) co_await asio::async_connect(*socket, endpoints, asio::use_awaitable);
      co_await asio::async_write(*socket, asio::buffer(request), asio::use_awaitable);
      std::array<char, 16384> buffer;
      while (!response.done()) {
        boost::system::error_code ec;
        const size_t got =
            co_await socket->async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
        if (ec == asio::error::eof) {
          if (!received && reused && !timed_out) break;  // a stale pooled connection: retry
          const Status end = response.on_eof();
          if (!end.ok()) record.error = end.error().message;
          break;
        }
        if (ec) throw boost::system::system_error(ec);
        received = true;
        const Status fed = response.feed(std::string_view(buffer.data(), got), decoded);
        if (!fed.ok()) {
          record.error = fed.error().message;
          break;
        }
        if (response.head_done() && response.status() == 200) consume_events(decoded, record, start, last_token, chunks);
      }
    } catch (const boost::system::system_error& error) {
      if (!received && reused && !timed_out) continue;  // a stale pooled connection: retry
      record.error = timed_out ? "timed out" : error.code().message();
    }
    if (received || !record.error.empty() || timed_out) break;
  }
  deadline.cancel();
  record.e2e = since(start);
  if (record.error.empty() && !response.done()) record.error = timed_out ? "timed out" : "no response";
  if (record.error.empty() && response.status() != 200) {
    const Json error = Json::parse(decoded, nullptr, false);
    record.error = "HTTP " + std::to_string(response.status()) +
                   (error.is_object() && error.contains("error") && error["error"].is_object()
                        ? ": " + error["error"].value("message", std::string())
                        : std::string());
  }
  if (socket && response.reusable() && !timed_out) pool.push_back(std::move(socket));
  if (record.output_tokens == 0) record.output_tokens = chunks;
  record.success = record.error.empty() && chunks > 0;
  if (record.error.empty() && !record.success) record.error = "no tokens in the stream";
  co_return record;
}

// Sends each prompt at its arrival time once a concurrency slot is free; a finishing request
// frees its slot and wakes the dispatcher.
asio::awaitable<void> dispatch(const BenchServeConfig& config, const tcp::resolver::results_type& endpoints,
                               const std::vector<BenchPrompt>& prompts, BenchServeRun& run,
                               const std::function<void(int, int)>& on_done) {
  auto executor = co_await asio::this_coro::executor;
  std::mt19937_64 rng(config.seed);
  const bool poisson = config.request_rate > 0.0 && std::isfinite(config.request_rate);
  std::exponential_distribution<double> gap(poisson ? config.request_rate : 1.0);
  asio::steady_timer arrival(executor), slot(executor);
  ConnectionPool pool;
  int in_flight = 0, completed = 0;
  const int total = static_cast<int>(prompts.size());
  auto next = Clock::now();
  for (int index = 0; index < total; ++index) {
    if (poisson) {
      next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
      arrival.expires_at(next);
      co_await arrival.async_wait(asio::use_awaitable);
    }
    while (config.max_concurrency > 0 && in_flight >= config.max_concurrency) {
      slot.expires_at(Clock::time_point::max());
      boost::system::error_code ec;
      co_await slot.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    ++in_flight;
    asio::co_spawn(
        executor,
        [&, index]() -> asio::awaitable<void> {
          run.records[index] = co_await one_request(config, endpoints, prompts[index], pool);
          --in_flight;
          ++completed;
          if (on_done) on_done(completed, total);
          slot.cancel();
        },
        asio::detached);
  }
  // Wait for the stragglers.
  while (completed < total) {
    slot.expires_at(Clock::time_point::max());
    boost::system::error_code ec;
    co_await slot.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace

Result<BenchServeRun> run_bench_serve(const BenchServeConfig& config, const std::vector<BenchPrompt>& prompts,
                                      const std::function<void(int, int)>& on_done) {
  asio::io_context io(1);
  boost::system::error_code ec;
  tcp::resolver resolver(io);
  const auto endpoints = resolver.resolve(config.host, std::to_string(config.port), ec);
  if (ec) return make_error("cannot resolve {}:{}: {}", config.host, config.port, ec.message());
  BenchServeRun run;
  run.records.resize(prompts.size());
  const auto start = Clock::now();
  asio::co_spawn(io, dispatch(config, endpoints, prompts, run, on_done), asio::detached);
  io.run();
  run.duration_seconds = since(start);
  return run;
}

Result<std::string> http_get(const std::string& host, int port, const std::string& path, const std::string& api_key) {
  asio::io_context io(1);
  boost::system::error_code ec;
  tcp::resolver resolver(io);
  const auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return make_error("cannot resolve {}:{}: {}", host, port, ec.message());
  tcp::socket socket(io);
  asio::connect(socket, endpoints, ec);
  if (ec) return make_error("cannot connect to {}:{}: {}", host, port, ec.message());
  asio::write(socket, asio::buffer(http_request("GET", host, path, "", /*keep_alive=*/false, api_key)), ec);
  if (ec) return make_error("GET {}: {}", path, ec.message());
  ResponseReader response;
  std::string body;
  std::array<char, 16384> buffer;
  while (!response.done()) {
    const size_t got = socket.read_some(asio::buffer(buffer), ec);
    if (ec == asio::error::eof) {
      MS_RETURN_IF_ERROR(response.on_eof());
      break;
    }
    if (ec) return make_error("GET {}: {}", path, ec.message());
    const Status fed = response.feed(std::string_view(buffer.data(), got), body);
    if (!fed.ok()) return make_error("GET {}: {}", path, fed.error().message);
  }
  if (response.status() != 200) return make_error("GET {}: HTTP {}", path, response.status());
  return body;
}
}  // namespace moeserve::cli

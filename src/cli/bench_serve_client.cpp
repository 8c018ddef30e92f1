#include "cli/bench_serve_client.h"

#include <chrono>
#include <cmath>
#include <deque>
#include <random>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

namespace moeserve::cli {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// HTTP/1.0: the server ends a stream by closing the connection, so the client needs no chunked
// decoding — it reads until EOF and splits head from body.
std::string http_request(const std::string& method, const std::string& host, const std::string& path,
                         const std::string& body) {
  std::string out = method + " " + path + " HTTP/1.0\r\nHost: " + host + "\r\n";
  if (!body.empty()) out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return out + "\r\n" + body;
}

int status_of(const std::string& head) {
  const size_t space = head.find(' ');
  return space == std::string::npos ? 0 : std::atoi(head.c_str() + space + 1);
}

// Consumes complete SSE events ("data: ...\n\n") from `pending`, updating the record.
void consume_events(std::string& pending, RequestRecord& record, Clock::time_point start, double& last_token,
                    int& chunks) {
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

asio::awaitable<RequestRecord> one_request(const BenchServeConfig& config, const tcp::resolver::results_type& endpoints,
                                           const BenchPrompt& prompt) {
  RequestRecord record;
  record.prompt_tokens = static_cast<int>(prompt.prompt_ids.size());
  Json body = {{"model", config.model},         {"prompt", prompt.prompt_ids}, {"max_tokens", prompt.max_tokens},
               {"temperature", config.temperature}, {"stream", true},
               {"stream_options", {{"include_usage", true}}}, {"ignore_eos", config.ignore_eos}};
  if (config.top_p) body["top_p"] = *config.top_p;
  if (config.top_k) body["top_k"] = *config.top_k;
  if (config.min_p) body["min_p"] = *config.min_p;
  const std::string request = http_request("POST", config.host, config.endpoint, body.dump());
  auto executor = co_await asio::this_coro::executor;
  tcp::socket socket(executor);
  asio::steady_timer deadline(executor);
  deadline.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.timeout_seconds)));
  bool timed_out = false;
  deadline.async_wait([&](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    boost::system::error_code ignored;
    socket.close(ignored);
  });
  const auto start = Clock::now();
  std::string head, pending;
  double last_token = 0.0;
  int chunks = 0;
  try {
    co_await asio::async_connect(socket, endpoints, asio::use_awaitable);
    co_await asio::async_write(socket, asio::buffer(request), asio::use_awaitable);
    std::array<char, 16384> buffer;
    bool in_body = false;
    while (true) {
      boost::system::error_code ec;
      const size_t got =
          co_await socket.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::eof) break;
      if (ec) throw boost::system::system_error(ec);
      if (!in_body) {
        head.append(buffer.data(), got);
        const size_t split = head.find("\r\n\r\n");
        if (split == std::string::npos) continue;
        pending = head.substr(split + 4);
        head.resize(split);
        in_body = true;
      } else {
        pending.append(buffer.data(), got);
      }
      if (status_of(head) == 200) consume_events(pending, record, start, last_token, chunks);
    }
  } catch (const boost::system::system_error& error) {
    record.error = timed_out ? "timed out" : error.code().message();
  }
  deadline.cancel();
  record.e2e = since(start);
  if (record.error.empty() && status_of(head) != 200) {
    const Json error = Json::parse(pending, nullptr, false);
    record.error = "HTTP " + std::to_string(status_of(head)) + (error.is_object() && error.contains("error")
                                           ? ": " + error["error"].value("message", std::string())
                                           : std::string());
  }
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
          run.records[index] = co_await one_request(config, endpoints, prompts[index]);
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

Result<std::string> http_get(const std::string& host, int port, const std::string& path) {
  asio::io_context io(1);
  boost::system::error_code ec;
  tcp::resolver resolver(io);
  const auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return make_error("cannot resolve {}:{}: {}", host, port, ec.message());
  tcp::socket socket(io);
  asio::connect(socket, endpoints, ec);
  if (ec) return make_error("cannot connect to {}:{}: {}", host, port, ec.message());
  asio::write(socket, asio::buffer(http_request("GET", host, path, "")), ec);
  std::string response;
  asio::read(socket, asio::dynamic_buffer(response), ec);
  if (ec && ec != asio::error::eof) return make_error("GET {}: {}", path, ec.message());
  const size_t split = response.find("\r\n\r\n");
  if (split == std::string::npos) return make_error("GET {}: malformed response", path);
  if (status_of(response) != 200) return make_error("GET {}: HTTP {}", path, status_of(response));
  return response.substr(split + 4);
}
}  // namespace moeserve::cli

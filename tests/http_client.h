// A small blocking HTTP/1.1 client for tests (Boost.Beast over loopback): one keep-alive
// connection per HttpClient, whole responses read into strings, and SSE payload splitting.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace moeserve::testing {

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

// A blocking keep-alive HTTP/1.1 client connection.
class HttpClient {
 public:
  explicit HttpClient(int port) : socket_(io_) {
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  }

  HttpResult request(const std::string& method, const std::string& path, const std::string& body = "",
                     const std::map<std::string, std::string>& headers = {}) {
    namespace http = boost::beast::http;
    http::request<http::string_body> request{http::string_to_verb(method), path, 11};
    request.set(http::field::host, "127.0.0.1");
    for (const auto& [name, value] : headers) request.set(name, value);
    if (!body.empty() || method == "POST") {
      request.set(http::field::content_type, "application/json");
      request.body() = body;
      request.prepare_payload();
    }
    http::write(socket_, request);
    return read_response(method == "HEAD");
  }

  // `head`: the response to a HEAD request, whose Content-Length announces a body never sent.
  HttpResult read_response(bool head = false) {
    namespace http = boost::beast::http;
    http::response_parser<http::string_body> parser;
    parser.skip(head);
    parser.body_limit(256u << 20);
    http::read(socket_, buffer_, parser);
    HttpResult result;
    result.status = static_cast<int>(parser.get().result_int());
    for (const auto& field : parser.get())
      result.headers[std::string(field.name_string())] = std::string(field.value());
    result.body = parser.get().body();
    return result;
  }

  boost::asio::ip::tcp::socket& socket() { return socket_; }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

// The `data:` payloads of an SSE body, in order ("[DONE]" included).
inline std::vector<std::string> sse_payloads(const std::string& body) {
  std::vector<std::string> payloads;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    payloads.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end;
  }
  return payloads;
}

// The value of the first series in Prometheus text `text` whose line starts with `series`
// (a metric name, optionally with the start of its labels); -1 when absent.
inline double metric_value(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series);
  if (at == std::string::npos) return -1;
  const size_t line_end = text.find('\n', at + 1);
  const std::string line = text.substr(at + 1, line_end - at - 1);
  return std::stod(line.substr(line.rfind(' ') + 1));
}

// A streaming POST /v1/completions (`body`: its JSON) on the client's raw connection: writes it
// and returns once the first event's bytes came (in `received`).
inline void start_stream(HttpClient& client, const std::string& body, std::string& received) {
  namespace http = boost::beast::http;
  http::request<http::string_body> request{http::verb::post, "/v1/completions", 11};
  request.set(http::field::host, "127.0.0.1");
  request.set(http::field::content_type, "application/json");
  request.body() = body;
  request.prepare_payload();
  http::write(client.socket(), request);
  char buffer[4096];
  while (received.find("data: ") == std::string::npos) {
    received.append(buffer, client.socket().read_some(boost::asio::buffer(buffer)));
  }
}

// A raw connection reading GET /live: the bytes as they come, split into the events' JSON.
class LiveReader {
 public:
  explicit LiveReader(int port, const std::string& authorization = "") : client_(port) {
    std::string request = "GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (!authorization.empty()) request += "Authorization: " + authorization + "\r\n";
    request += "\r\n";
    boost::asio::write(client_.socket(), boost::asio::buffer(request));
  }

  // Reads until at least `count` events arrived in all (or the timeout passes); every event so far.
  const std::vector<nlohmann::json>& events(size_t count,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (parsed_.size() < count && std::chrono::steady_clock::now() < deadline) read_some();
    return parsed_;
  }
  size_t size() const { return parsed_.size(); }
  const std::string& raw() const { return raw_; }
  void close() { client_.socket().close(); }

 private:
  void read_some() {
    auto& socket = client_.socket();
    socket.non_blocking(true);
    char buffer[65536];
    boost::system::error_code ec;
    const size_t got = socket.read_some(boost::asio::buffer(buffer), ec);
    if (ec == boost::asio::error::would_block) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return;
    }
    if (ec) throw std::runtime_error("live stream read: " + ec.message());
    raw_.append(buffer, got);
    // Each event is one chunk: "<hex>\r\ndata: {...}\n\n\r\n".
    size_t pos;
    while ((pos = raw_.find("data: ", consumed_)) != std::string::npos) {
      const size_t end = raw_.find("\n\n", pos);
      if (end == std::string::npos) break;
      parsed_.push_back(nlohmann::json::parse(raw_.substr(pos + 6, end - pos - 6)));
      consumed_ = end + 2;
    }
  }

  HttpClient client_;
  std::string raw_;
  size_t consumed_ = 0;
  std::vector<nlohmann::json> parsed_;
};

}  // namespace moeserve::testing

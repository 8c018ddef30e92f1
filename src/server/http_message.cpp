// HTTP response heads and chunked framing.
#include "server/http_message.h"

#include <boost/beast/http/status.hpp>
#include <fmt/format.h>

namespace moeserve {
namespace {

std::string status_line(int status) {
  const auto reason = boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  return fmt::format("HTTP/1.1 {} {}\r\n", status, std::string_view(reason.data(), reason.size()));
}

}  // namespace

HttpResponse text_response(int status, std::string content_type, std::string body) {
  HttpResponse response;
  response.status = status;
  response.content_type = std::move(content_type);
  response.body = std::move(body);
  return response;
}

HttpResponse json_response(int status, std::string body) {
  return text_response(status, "application/json", std::move(body));
}

HttpResponse error_response(const ApiError& error) {
  HttpResponse response = json_response(error.status, error.to_json());
  response.error_message = error.message;
  return response;
}

std::string serialize_response(const HttpResponse& response, bool keep_alive, bool head,
                               const std::string& extra_headers) {
  std::string out = status_line(response.status);
  out += "Server: moeserve\r\n";
  out += extra_headers;
  if (!response.content_type.empty()) out += "Content-Type: " + response.content_type + "\r\n";
  for (const auto& [name, value] : response.headers) out += name + ": " + value + "\r\n";
  out += fmt::format("Content-Length: {}\r\n", response.body.size());
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (!head) out += response.body;
  return out;
}

std::string serialize_stream_head(bool chunked, const std::string& extra_headers) {
  std::string out = status_line(200);
  out += "Server: moeserve\r\n" + extra_headers;
  out += "Content-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n";
  out += chunked ? "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return out;
}

std::string serialize_chunk(const std::string& data) { return fmt::format("{:x}\r\n{}\r\n", data.size(), data); }

}  // namespace moeserve

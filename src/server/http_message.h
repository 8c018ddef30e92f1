// The server's own view of an HTTP exchange, independent of Beast: a parsed request as the
// routes need it, and a complete (non-streaming) response with its head serialised by hand so
// the session can write plain byte strings (the same path SSE chunks take).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "server/errors.h"

namespace moeserve {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query string
  std::string body;
  std::string authorization;  // the Authorization header, "" when absent
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Retry-After, Allow)
  std::string error_message;  // an error response's message, for the server's log line
};

HttpResponse json_response(int status, std::string body);
HttpResponse text_response(int status, std::string content_type, std::string body);
HttpResponse error_response(const ApiError& error);

// "HTTP/1.1 <status> <reason>\r\n" + headers + Content-Length / Connection + "\r\n" + body.
// For a HEAD request (`head`), the same head (Content-Length is the body's size) without the body.
// extra_headers: complete header lines ("Name: value\r\n") every response of the server carries.
std::string serialize_response(const HttpResponse& response, bool keep_alive, bool head = false,
                               const std::string& extra_headers = "");
// The head of a streamed (SSE) response: chunked for HTTP/1.1, close-delimited for HTTP/1.0.
std::string serialize_stream_head(bool chunked, const std::string& extra_headers = "");
// One chunk of a chunked body ("<hex size>\r\n<data>\r\n"); data must not be empty.
std::string serialize_chunk(const std::string& data);
inline constexpr const char* kLastChunk = "0\r\n\r\n";

}  // namespace moeserve

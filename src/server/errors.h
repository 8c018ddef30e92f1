// API errors in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with the HTTP
// status each one is sent with. `type` follows vLLM's names (BadRequestError, NotFoundError,
// ...) and `code` repeats the status as vLLM does, so clients written against vLLM see the same
// bodies.
#pragma once

#include <optional>
#include <string>

namespace moeserve {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "BadRequestError";
  std::optional<std::string> param;  // the offending request field, when there is one
  // OpenAI's error code where it has one (context_length_exceeded); otherwise `code` repeats the
  // status, as vLLM sends it.
  std::optional<std::string> code;

  std::string to_json() const;
};

ApiError bad_request(std::string message, std::optional<std::string> param = std::nullopt);
// A prompt, or prompt + max_tokens, over the model's context: 400 with OpenAI's code.
ApiError context_length_exceeded(std::string message, std::string param);
ApiError not_found(std::string message);
ApiError unauthorized();
ApiError method_not_allowed(const std::string& method, const std::string& path);
ApiError payload_too_large(size_t limit_bytes);
ApiError service_unavailable(std::string message);
ApiError internal_error(std::string message);

}  // namespace moeserve

// ApiError constructors and their JSON body.
#include "server/errors.h"

#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

ApiError make_api_error(int status, std::string message, std::string type) {
  ApiError error;
  error.status = status;
  error.message = std::move(message);
  error.type = std::move(type);
  return error;
}

}  // namespace

std::string ApiError::to_json() const {
  nlohmann::ordered_json error;
  error["message"] = message;
  error["type"] = type;
  error["param"] = param ? nlohmann::ordered_json(*param) : nlohmann::ordered_json(nullptr);
  error["code"] = code ? nlohmann::ordered_json(*code) : nlohmann::ordered_json(status);
  nlohmann::ordered_json body;
  body["error"] = std::move(error);
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

ApiError bad_request(std::string message, std::optional<std::string> param) {
  ApiError error = make_api_error(400, std::move(message), "BadRequestError");
  error.param = std::move(param);
  return error;
}

ApiError context_length_exceeded(std::string message, std::string param) {
  ApiError error = bad_request(std::move(message), std::move(param));
  error.code = "context_length_exceeded";
  return error;
}

ApiError not_found(std::string message) { return make_api_error(404, std::move(message), "NotFoundError"); }

ApiError unauthorized() {
  return make_api_error(401, "Invalid or missing API key: send `Authorization: Bearer <key>`.", "AuthenticationError");
}

ApiError method_not_allowed(const std::string& method, const std::string& path) {
  return make_api_error(405, "Method " + method + " is not allowed on " + path + ".", "MethodNotAllowedError");
}

ApiError payload_too_large(size_t limit_bytes) {
  return make_api_error(413,
                        "Request body is larger than the server's limit of " + std::to_string(limit_bytes) + " bytes.",
                        "PayloadTooLargeError");
}

ApiError service_unavailable(std::string message) {
  return make_api_error(503, std::move(message), "ServiceUnavailableError");
}

ApiError internal_error(std::string message) { return make_api_error(500, std::move(message), "InternalServerError"); }

}  // namespace moeserve

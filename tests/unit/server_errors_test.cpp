// The HTTP server's error paths over a fake engine on loopback: each bad input gets its status
// and an OpenAI-shaped body ({"error": {"message", "type", "param", "code"}}) — malformed JSON,
// wrong types, out-of-range values, empty messages, unknown roles, template errors, token ids
// outside the vocabulary, prompt + max_tokens over max_model_len, bad API key, unknown model
// or route, wrong method, oversized body, a full waiting queue (503 + Retry-After), malformed
// HTTP — and the server stays healthy afterwards.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "unit/server_test_support.h"

namespace moeserve::testing {
namespace {

using nlohmann::json;

// Checks the status and the error body's shape; returns the message.
// `code`: OpenAI's error code where the error has one; otherwise the status is expected there.
std::string expect_error(const HttpResult& result, int status, const std::string& type,
                         std::optional<std::string> param = std::nullopt,
                         std::optional<std::string> code = std::nullopt) {
  EXPECT_EQ(result.status, status) << result.body;
  json body = json::parse(result.body, nullptr, false);
  EXPECT_TRUE(body.is_object() && body.contains("error")) << result.body;
  if (!body.is_object() || !body.contains("error")) return "";
  const json& error = body["error"];
  EXPECT_EQ(error.size(), 4u);
  EXPECT_EQ(error["type"], type);
  if (code) {
    EXPECT_EQ(error["code"], *code) << result.body;
  } else {
    EXPECT_EQ(error["code"], status) << result.body;
  }
  if (param) {
    EXPECT_EQ(error["param"], *param) << result.body;
  } else {
    EXPECT_TRUE(error.contains("param"));
  }
  EXPECT_FALSE(error["message"].get<std::string>().empty());
  return error["message"];
}

json user_turn(const std::string& text) { return {{"role", "user"}, {"content", text}}; }

// A chat template file in the temporary directory (the caller removes it).
std::filesystem::path write_template(const std::string& name, const std::string& text) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path;
}

TEST(ServerErrors, MalformedJsonAndWrongTypes) {
  ServerHarness harness;
  HttpClient client(harness.port());
  std::string message = expect_error(client.request("POST", "/v1/completions", "{\"prompt\": \"x\",,}"), 400, "BadRequestError");
  EXPECT_NE(message.find("not valid JSON"), std::string::npos);
  expect_error(client.request("POST", "/v1/completions", "[1, 2]"), 400, "BadRequestError");
  expect_error(client.request("POST", "/v1/completions", std::string(1000, '[')), 400, "BadRequestError");
  expect_error(harness.post("/v1/completions", {{"prompt", "x"}, {"temperature", "hot"}}), 400, "BadRequestError",
               "temperature");
  expect_error(harness.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 2.5}}), 400, "BadRequestError", "max_tokens");
  expect_error(harness.post("/v1/completions", {{"prompt", "x"}, {"stream", "yes"}}), 400, "BadRequestError", "stream");
  expect_error(harness.post("/v1/completions", {{"prompt", "x"}, {"stop", {1, 2}}}), 400, "BadRequestError", "stop");
  expect_error(harness.post("/v1/completions", {{"prompt", {{"a"}, 3}}}), 400, "BadRequestError", "prompt");
  expect_error(harness.post("/v1/completions", {{"max_tokens", 3}}), 400, "BadRequestError", "prompt");
  expect_error(harness.post("/v1/chat/completions", {{"messages", "hello"}}), 400, "BadRequestError", "messages");
  expect_error(harness.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", 5}}}}}), 400,
               "BadRequestError", "messages[0].content");
  EXPECT_TRUE(harness.engine.submitted().empty());
}

TEST(ServerErrors, OutOfRangeValues) {
  ServerHarness harness;
  const std::vector<std::pair<std::string, json>> cases = {
      {"top_p", 1.5},          {"top_p", 0},           {"temperature", -0.1}, {"n", 0},
      {"max_tokens", 0},       {"logprobs", 21},       {"presence_penalty", 3}, {"frequency_penalty", -2.5},
      {"repetition_penalty", 0}, {"min_p", 1.5},       {"top_k", -2},         {"min_tokens", -1}};
  for (const auto& [field, value] : cases) {
    json request = {{"prompt", "In the beginning"}};
    request[field] = value;
    std::string message = expect_error(harness.post("/v1/completions", request), 400, "BadRequestError", field);
    EXPECT_NE(message.find(field), std::string::npos) << message;
  }
  expect_error(harness.post("/v1/completions", {{"prompt", "x"}, {"min_tokens", 5}, {"max_tokens", 2}}), 400,
               "BadRequestError", "min_tokens");
  expect_error(harness.post("/v1/chat/completions", {{"messages", {user_turn("hi")}}, {"top_logprobs", 2}}), 400,
               "BadRequestError", "top_logprobs");
  expect_error(harness.post("/v1/completions", {{"prompt", "x"}, {"stream_options", {{"include_usage", true}}}}), 400,
               "BadRequestError", "stream_options");
  expect_error(harness.post("/v1/completions", {{"prompt", "x"}, {"logit_bias", {{"5", 10}}}}), 400, "BadRequestError",
               "logit_bias");
  EXPECT_TRUE(harness.engine.submitted().empty());
}

TEST(ServerErrors, ChatMessagesRolesAndTemplateErrors) {
  ServerHarness harness;
  expect_error(harness.post("/v1/chat/completions", {{"messages", json::array()}}), 400, "BadRequestError", "messages");
  std::string message = expect_error(
      harness.post("/v1/chat/completions", {{"messages", {{{"role", "wizard"}, {"content", "hi"}}}}}), 400,
      "BadRequestError", "messages[0].role");
  EXPECT_NE(message.find("wizard"), std::string::npos);
  // The bundled Mixtral template raises on two user turns in a row; its own message reaches the
  // client, prefixed once.
  message = expect_error(harness.post("/v1/chat/completions", {{"messages", {user_turn("a"), user_turn("b")}}}), 400,
                         "BadRequestError", "messages");
  EXPECT_EQ(message, "chat template error: Conversation roles must alternate user/assistant/user/assistant/...");
  expect_error(harness.post("/v1/chat/completions",
                            {{"messages", {user_turn("a")}}, {"continue_final_message", true}}),
               400, "BadRequestError", "continue_final_message");
  expect_error(harness.post("/v1/chat/completions",
                            {{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", "x"}}}}}}}}),
               400, "BadRequestError", "messages[0].content");
  EXPECT_TRUE(harness.engine.submitted().empty());
}

// A system message is the template's business: moeserve adds no role-order check of its own, so
// the client reads what the template raised, exactly as jinja2 renders it (the Mixtral template
// checks alternation before roles, so a leading system message fails the alternation test and a
// later one the role test), with "chat template error: " said once.
TEST(ServerErrors, SystemMessageGetsTheTemplatesOwnMessage) {
  ServerHarness harness;
  const json system = {{"role", "system"}, {"content", "Be brief."}};
  std::string message = expect_error(
      harness.post("/v1/chat/completions", {{"messages", {system, user_turn("a")}}}), 400, "BadRequestError", "messages");
  EXPECT_EQ(message, "chat template error: Conversation roles must alternate user/assistant/user/assistant/...");
  message = expect_error(harness.post("/v1/chat/completions", {{"messages", {user_turn("a"), system}}}), 400,
                         "BadRequestError", "messages");
  EXPECT_EQ(message, "chat template error: Only user and assistant roles are supported!");
  // /tokenize renders the same way and refuses with the same message.
  message = expect_error(harness.post("/tokenize", {{"messages", {user_turn("a"), system}}}), 400, "BadRequestError",
                         "messages");
  EXPECT_EQ(message, "chat template error: Only user and assistant roles are supported!");
  EXPECT_TRUE(harness.engine.submitted().empty());

  // A template that refuses system messages first (as Gemma's does) gets its words through.
  const std::filesystem::path path = write_template(
      "moeserve_server_errors_system.jinja",
      "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
      "{% for m in messages %}{{ m['content'] }}{% endfor %}{{ messages[5].missing.attribute }}");
  ServerOptions options;
  options.chat_template_path = path.string();
  ServerHarness custom(options);
  std::filesystem::remove(path);
  message = expect_error(custom.post("/v1/chat/completions", {{"messages", {system, user_turn("a")}}}), 400,
                         "BadRequestError", "messages");
  EXPECT_EQ(message, "chat template error: System role not supported");
  // A runtime error of the template itself: the prefix once, then the line.
  message = expect_error(custom.post("/v1/chat/completions", {{"messages", {user_turn("a")}}}), 400, "BadRequestError",
                         "messages");
  EXPECT_EQ(message.rfind("chat template error: line 1: ", 0), 0u) << message;
  EXPECT_EQ(message.find("chat template error:", 1), std::string::npos) << message;
}

// The body must be exactly one JSON value: a NUL byte and junk after it are refused (nlohmann's
// lexer alone would stop at the NUL and accept the object before it), as is junk without one;
// whitespace around the value is fine.
TEST(ServerErrors, BodyMustBeExactlyOneJsonValue) {
  ServerHarness harness;
  HttpClient client(harness.port());
  const std::string valid = R"({"prompt": "x", "max_tokens": 1})";
  std::string message = expect_error(client.request("POST", "/v1/completions", valid + std::string(1, '\0') + "junk"),
                                     400, "BadRequestError");
  EXPECT_EQ(message, "request body is not valid JSON: NUL byte at offset 32; the body must be exactly one JSON value");
  expect_error(client.request("POST", "/v1/completions", valid + std::string(1, '\0')), 400, "BadRequestError");
  expect_error(client.request("POST", "/tokenize", R"({"prompt": "a)" + std::string(1, '\0') + R"(b"})"), 400,
               "BadRequestError");
  message = expect_error(client.request("POST", "/v1/completions", valid + " junk"), 400, "BadRequestError");
  EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;
  expect_error(client.request("POST", "/v1/completions", valid + valid), 400, "BadRequestError");
  EXPECT_TRUE(harness.engine.submitted().empty());
  EXPECT_EQ(client.request("POST", "/v1/completions", " \r\n" + valid + " \t\r\n\n").status, 200);
  EXPECT_EQ(harness.engine.submitted().size(), 1u);
}

TEST(ServerErrors, TokenIdsOutsideTheVocabulary) {
  ServerHarness harness;
  const int vocab = harness.engine.tokenizer()->vocab_size();
  std::string message =
      expect_error(harness.post("/v1/completions", {{"prompt", {1, vocab}}}), 400, "BadRequestError", "prompt");
  EXPECT_NE(message.find(std::to_string(vocab)), std::string::npos);
  expect_error(harness.post("/v1/completions", {{"prompt", {1, -3}}}), 400, "BadRequestError", "prompt");
  expect_error(harness.post("/v1/completions", {{"prompt", "x"}, {"stop_token_ids", {vocab + 5}}}), 400,
               "BadRequestError", "stop_token_ids");
  expect_error(harness.post("/detokenize", {{"tokens", {1, vocab}}}), 400, "BadRequestError", "tokens");
  expect_error(harness.post("/v1/completions", {{"prompt", json::array({json::array()})}}), 400, "BadRequestError",
               "prompt");
  EXPECT_TRUE(harness.engine.submitted().empty());
}

TEST(ServerErrors, PromptPlusMaxTokensBeyondMaxModelLen) {
  ServerHarness harness({}, /*max_model_len=*/64);
  const std::vector<int32_t> prompt(20, 560);
  std::string message = expect_error(harness.post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 50}}), 400,
                                     "BadRequestError", "max_tokens", "context_length_exceeded");
  EXPECT_NE(message.find("maximum context length is 64 tokens"), std::string::npos) << message;
  EXPECT_NE(message.find("you requested 70 tokens (20 in the prompt, 50 in the completion)"), std::string::npos)
      << message;
  message = expect_error(harness.post("/v1/completions", {{"prompt", std::vector<int32_t>(64, 560)}}), 400,
                         "BadRequestError", "prompt", "context_length_exceeded");
  EXPECT_NE(message.find("64 input tokens"), std::string::npos) << message;
  // Exactly filling the context is allowed.
  EXPECT_EQ(harness.post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 44}}).status, 200);
}

// A text prompt over the context is refused with OpenAI's context_length_exceeded, a large one
// (4 MB of text against 64 tokens) without being tokenized in full, and one that fits exactly is
// served: the bound never refuses a prompt that fits. Chat prompts likewise.
TEST(ServerErrors, TextPromptOverTheContextIsContextLengthExceeded) {
  ServerHarness harness({}, /*max_model_len=*/64);
  std::string large;
  while (large.size() < 4'000'000) large += "In the beginning God created the heaven and the earth. ";
  std::string message = expect_error(harness.post("/v1/completions", {{"prompt", large}, {"max_tokens", 1}}), 400,
                                     "BadRequestError", "prompt", "context_length_exceeded");
  EXPECT_NE(message.find("maximum context length is 64 tokens"), std::string::npos) << message;
  message = expect_error(harness.post("/v1/chat/completions", {{"messages", {user_turn(large)}}, {"max_tokens", 1}}),
                         400, "BadRequestError", "messages", "context_length_exceeded");
  EXPECT_NE(message.find("maximum context length is 64 tokens"), std::string::npos) << message;
  // The longest text prompt that fits (63 tokens with BOS) is served; one word more is refused.
  const auto tokenizer = harness.engine.tokenizer();
  std::string fits = "In";
  while (true) {
    const std::string longer = fits + " the";
    if (tokenizer->encode(longer, true)->size() > 63) break;
    fits = longer;
  }
  ASSERT_EQ(tokenizer->encode(fits, true)->size(), 63u);
  EXPECT_EQ(harness.post("/v1/completions", {{"prompt", fits}, {"max_tokens", 1}}).status, 200);
  expect_error(harness.post("/v1/completions", {{"prompt", fits + " the"}, {"max_tokens", 1}}), 400, "BadRequestError",
               "prompt", "context_length_exceeded");
  EXPECT_TRUE(harness.engine.submitted().size() == 1u);
}

TEST(ServerErrors, ApiKeyGuardsOnlyTheV1Routes) {
  ServerOptions options;
  options.api_key = "sekret";
  ServerHarness harness(options);
  const json request = {{"prompt", "x"}, {"max_tokens", 1}};
  expect_error(harness.post("/v1/completions", request), 401, "AuthenticationError");
  expect_error(harness.post("/v1/completions", request, {{"Authorization", "Bearer wrong"}}), 401, "AuthenticationError");
  expect_error(harness.post("/v1/completions", request, {{"Authorization", "sekret"}}), 401, "AuthenticationError");
  expect_error(harness.get("/v1/models"), 401, "AuthenticationError");
  EXPECT_EQ(harness.post("/v1/completions", request, {{"Authorization", "Bearer sekret"}}).status, 200);
  EXPECT_EQ(harness.get("/v1/models", {{"Authorization", "Bearer sekret"}}).status, 200);
  EXPECT_EQ(harness.get("/health").status, 200);
  EXPECT_EQ(harness.get("/metrics").status, 200);
}

TEST(ServerErrors, UnknownModelRouteAndMethod) {
  ServerHarness harness;
  std::string message = expect_error(harness.post("/v1/completions", {{"model", "gpt-4"}, {"prompt", "x"}}), 404,
                                     "NotFoundError", "model");
  EXPECT_EQ(message, "The model `gpt-4` does not exist.");
  expect_error(harness.post("/v1/chat/completions", {{"model", "gpt-4"}, {"messages", {user_turn("x")}}}), 404,
               "NotFoundError", "model");
  expect_error(harness.get("/v2/nothing"), 404, "NotFoundError");
  HttpResult wrong_method = harness.get("/v1/completions");
  expect_error(wrong_method, 405, "MethodNotAllowedError");
  EXPECT_EQ(wrong_method.headers["Allow"], "POST");
  expect_error(harness.post("/health", json::object()), 405, "MethodNotAllowedError");
}

TEST(ServerErrors, OversizedBodyGets413) {
  ServerOptions options;
  options.max_body_bytes = 1024;
  ServerHarness harness(options);
  const std::string big(4000, 'a');
  std::string message = expect_error(harness.post("/v1/completions", {{"prompt", big}}), 413, "PayloadTooLargeError");
  EXPECT_NE(message.find("1024"), std::string::npos);
  // Chunked uploads have no Content-Length: the parser's limit catches them.
  HttpClient client(harness.port());
  const std::string request =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + std::string(2048, 'a') +
      "\r\n0\r\n\r\n";
  boost::asio::write(client.socket(), boost::asio::buffer(request));
  expect_error(client.read_response(), 413, "PayloadTooLargeError");
  EXPECT_EQ(harness.post("/v1/completions", {{"prompt", "fine"}, {"max_tokens", 1}}).status, 200);
}

TEST(ServerErrors, FullWaitingQueueGets503WithRetryAfter) {
  ServerOptions options;
  options.max_waiting_requests = 4;
  ServerHarness harness(options);
  harness.engine.num_waiting = 4;
  HttpResult result = harness.post("/v1/completions", {{"prompt", "x"}});
  expect_error(result, 503, "ServiceUnavailableError");
  EXPECT_EQ(result.headers["Retry-After"], "1");
  expect_error(harness.post("/v1/chat/completions", {{"messages", {user_turn("x")}}}), 503, "ServiceUnavailableError");
  EXPECT_EQ(harness.get("/health").status, 200);
  harness.engine.num_waiting = 3;
  EXPECT_EQ(harness.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}).status, 200);
}

// Issue 24: prompts x n counts against --max-waiting-requests as sequences (each choice of each
// prompt is one engine request): a request that alone exceeds the bound, or would take the waiting
// sequences past it, gets 503 + Retry-After in OpenAI's error shape naming the numbers, and
// nothing of it reaches the engine; 1,000 prompts x n=128 is refused at once.
TEST(ServerErrors, PromptsTimesNCountAgainstMaxWaitingRequests) {
  ServerOptions options;
  options.max_waiting_requests = 8;
  ServerHarness harness(options);
  const json three = json::array({"a", "b", "c"});
  HttpResult result = harness.post("/v1/completions", {{"prompt", three}, {"n", 3}, {"temperature", 1.0}});
  std::string message = expect_error(result, 503, "ServiceUnavailableError");
  EXPECT_EQ(result.headers["Retry-After"], "1");
  EXPECT_NE(message.find("9 sequences (3 prompt(s) x n=3)"), std::string::npos) << message;
  EXPECT_NE(message.find("--max-waiting-requests 8"), std::string::npos) << message;
  message = expect_error(harness.post("/v1/chat/completions", {{"messages", {user_turn("x")}}, {"n", 9}, {"temperature", 1.0}}),
                         503, "ServiceUnavailableError");
  EXPECT_NE(message.find("9 sequences (1 prompt(s) x n=9)"), std::string::npos) << message;
  json many = json::array();
  for (int i = 0; i < 1000; ++i) many.push_back("In the beginning");
  message = expect_error(harness.post("/v1/completions", {{"prompt", many}, {"n", 128}, {"temperature", 1.0}}), 503,
                         "ServiceUnavailableError");
  EXPECT_NE(message.find("128000 sequences (1000 prompt(s) x n=128)"), std::string::npos) << message;
  EXPECT_TRUE(harness.engine.submitted().empty());

  // 5 waiting + 2 prompts x n=2 = 9 > 8: overloaded; 4 waiting + 4 = 8 fits.
  harness.engine.num_waiting = 5;
  const json two = json::array({"a", "b"});
  message = expect_error(harness.post("/v1/completions", {{"prompt", two}, {"n", 2}, {"temperature", 1.0}, {"max_tokens", 1}}),
                         503, "ServiceUnavailableError");
  EXPECT_NE(message.find("5 sequences waiting, this request adds 4, limit 8"), std::string::npos) << message;
  EXPECT_TRUE(harness.engine.submitted().empty());
  harness.engine.num_waiting = 4;
  EXPECT_EQ(harness.post("/v1/completions", {{"prompt", two}, {"n", 2}, {"temperature", 1.0}, {"max_tokens", 1}}).status,
            200);
  EXPECT_EQ(harness.engine.submitted().size(), 4u);
}

TEST(ServerErrors, EngineRefusalIsABadRequest) {
  ServerHarness harness;
  harness.engine.fail_submit_message = "queue is closed";
  std::string message = expect_error(harness.post("/v1/completions", {{"prompt", "x"}}), 400, "BadRequestError");
  EXPECT_EQ(message, "queue is closed");
}

TEST(ServerErrors, MalformedHttpGets400AndTheServerStaysUp) {
  ServerHarness harness;
  {
    HttpClient client(harness.port());
    boost::asio::write(client.socket(), boost::asio::buffer(std::string("GARBAGE GARBAGE\r\n\r\n")));
    expect_error(client.read_response(), 400, "BadRequestError");
  }
  {
    HttpClient client(harness.port());
    boost::asio::write(client.socket(), boost::asio::buffer(std::string("POST /v1/completions HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")));
  }  // closed mid-body
  EXPECT_EQ(harness.get("/health").status, 200);
  EXPECT_EQ(harness.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}).status, 200);
}

// Every refused request leaves one line: client, method, path, version, status and the error
// message (4xx at info, 5xx at warning), even with --disable-log-requests (the harness sets it);
// control bytes a client put in the path are escaped. A request that succeeds is logged at debug.
TEST(ServerErrors, EachRefusalIsLoggedOnce) {
  LogCapture log;
  ServerOptions options;
  options.api_key = "sekret";
  options.max_body_bytes = 1024;
  options.max_waiting_requests = 1;
  ServerHarness harness(options);
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer sekret"}};
  HttpClient client(harness.port());
  expect_error(client.request("POST", "/v1/completions", "{\"prompt\": ", auth), 400, "BadRequestError");
  expect_error(client.request("POST", "/v1/completions", "{}"), 401, "AuthenticationError");
  expect_error(client.request("GET", "/v2/nothing%0d%0a"), 404, "NotFoundError");
  expect_error(client.request("DELETE", "/health"), 405, "MethodNotAllowedError");
  expect_error(client.request("POST", "/v1/completions", std::string(2000, ' '), auth), 413, "PayloadTooLargeError");
  HttpClient raw(harness.port());
  boost::asio::write(raw.socket(), boost::asio::buffer(std::string("GET /bad\x01path HTTP/1.1\r\n\r\n")));
  expect_error(raw.read_response(), 400, "BadRequestError");
  EXPECT_EQ(harness.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}}, auth).status, 200);
  EXPECT_EQ(harness.get("/health").status, 200);
  harness.engine.num_waiting = 1;
  expect_error(harness.post("/v1/completions", {{"prompt", "x"}}, auth), 503, "ServiceUnavailableError");

  std::vector<std::string> lines;
  for (const std::string& line : log.matching("127.0.0.1:")) {
    if (!line.starts_with("debug ")) lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 7u) << ::testing::PrintToString(log.lines());
  const auto answered = log.matching("\" 200 OK");
  ASSERT_EQ(answered.size(), 2u) << ::testing::PrintToString(log.lines());
  EXPECT_TRUE(answered[0].starts_with("debug 127.0.0.1:")) << answered[0];
  EXPECT_TRUE(answered[0].ends_with("\"POST /v1/completions HTTP/1.1\" 200 OK")) << answered[0];
  EXPECT_TRUE(answered[1].ends_with("\"GET /health HTTP/1.1\" 200 OK")) << answered[1];
  EXPECT_TRUE(lines[0].starts_with("info 127.0.0.1:")) << lines[0];
  EXPECT_TRUE(lines[0].find(" \"POST /v1/completions HTTP/1.1\" 400 Bad Request: request body is not valid JSON: ") !=
              std::string::npos)
      << lines[0];
  EXPECT_TRUE(lines[1].ends_with("\"POST /v1/completions HTTP/1.1\" 401 Unauthorized: Invalid or missing API key: send "
                                 "`Authorization: Bearer <key>`."))
      << lines[1];
  EXPECT_TRUE(lines[2].ends_with("\"GET /v2/nothing%0d%0a HTTP/1.1\" 404 Not Found: Route /v2/nothing%0d%0a not found."))
      << lines[2];
  EXPECT_TRUE(lines[3].ends_with("\"DELETE /health HTTP/1.1\" 405 Method Not Allowed: Method DELETE is not allowed on "
                                 "/health."))
      << lines[3];
  EXPECT_TRUE(lines[4].ends_with("\"POST /v1/completions HTTP/1.1\" 413 Payload Too Large: Request body is larger than "
                                 "the server's limit of 1024 bytes."))
      << lines[4];
  EXPECT_TRUE(lines[5].starts_with("info ")) << lines[5];
  EXPECT_NE(lines[5].find("\" 400 Bad Request: malformed HTTP request: "), std::string::npos) << lines[5];
  EXPECT_EQ(lines[5].find('\x01'), std::string::npos) << lines[5];
  EXPECT_TRUE(lines[6].starts_with("warning 127.0.0.1:")) << lines[6];
  EXPECT_NE(lines[6].find("\"POST /v1/completions HTTP/1.1\" 503 Service Unavailable: The server is overloaded"),
            std::string::npos)
      << lines[6];
}

TEST(ServerErrors, ChatTemplateFromFile) {
  const std::filesystem::path path = write_template(
      "moeserve_server_errors_template.jinja",
      "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}");
  ServerOptions options;
  options.chat_template_path = path.string();
  ServerHarness harness(options);
  ASSERT_EQ(harness.post("/v1/chat/completions", {{"messages", {user_turn("a"), user_turn("b")}}, {"max_tokens", 1}}).status,
            200);
  auto tokenizer = harness.engine.tokenizer();
  EXPECT_EQ(tokenizer->decode(harness.engine.submitted().at(0).prompt_ids, false), "[user]a[user]b[assistant]");
  std::filesystem::remove(path);

  ServerOptions missing;
  missing.chat_template_path = "/nonexistent/template.jinja";
  FakeEngineClient engine;
  MetricsRegistry registry;
  HttpServer server(missing, engine, registry);
  Status status = server.start();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("/nonexistent/template.jinja"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::testing

// `serve --api-server-count 2` end to end through the built binary (apiserver/api_servers.h):
// two API-server processes on one port in front of the engine's process. Greedy completions and
// chat completions (logprobs, a stop string), whole and streamed, equal a one-process server's
// answers: one at a time byte for byte (but for `id` and `created`; a stream by its text and
// logprobs, finish reasons, usage and [DONE]), and sent all at once the same but for logprob
// values within 1e-4 (the batch's makeup moves their last bits). Both API servers answer (each
// response's x-moeserve-api-server header, and each server's
// moeserve:api_server_requests_total, which together count every request); a client that hangs
// up aborts its requests in the engine (running and waiting back to 0), and a client that stops
// reading stalls no other; an API server killed ends the serve with status 1 within 10 s, with
// nothing left behind; the engine's process killed, or its rank worker (mp), makes the API
// servers answer 503 and exit; a taken port is refused; SIGTERM stops everything with status 0;
// the live page shows the engine's expert-parallel counters through the API servers.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "e2e/serve_process.h"
#include "http_client.h"
#include "reference_data.h"

namespace moeserve {
namespace {

using Json = nlohmann::json;
using testing::HttpClient;
using testing::HttpResult;
using testing::metric_value;
using testing::ServeProcess;
using Clock = std::chrono::steady_clock;

std::vector<std::string> serve_args(int api_servers) {
  std::vector<std::string> args = {testing::demo_model(), "--host", "127.0.0.1",           "--port", "0",
                                   "--threads",           "2",      "--served-model-name", "kjv"};
  if (api_servers > 0) {
    args.push_back("--api-server-count");
    args.push_back(std::to_string(api_servers));
  }
  return args;
}

// `count` long completions sent at once, still running when the caller kills something; each
// ends with its HTTP result (status -1: the connection failed).
std::vector<std::future<HttpResult>> long_requests(int port, int count) {
  std::vector<std::future<HttpResult>> in_flight;
  for (int i = 0; i < count; ++i) {
    in_flight.push_back(std::async(std::launch::async, [port]() -> HttpResult {
      try {
        HttpClient client(port);
        return client.request(
            "POST", "/v1/completions",
            Json{{"model", "kjv"}, {"prompt", "And God said"}, {"max_tokens", 4000}, {"ignore_eos", true}}.dump());
      } catch (const std::exception&) {
        return HttpResult{.status = -1};
      }
    }));
  }
  return in_flight;
}

// The API servers' pids, from the leader's "serving … (N API server processes, pids A, B)".
std::vector<pid_t> api_server_pids(const ServeProcess& server) {
  std::smatch match;
  const std::string output = server.output();
  std::vector<pid_t> pids;
  if (!std::regex_search(output, match, std::regex(R"(API server processes, pids ([0-9, ]+)\))"))) return pids;
  std::stringstream list(match[1].str());
  std::string pid;
  while (std::getline(list, pid, ',')) pids.push_back(std::stoi(pid));
  return pids;
}

// Whether `pid` is a live process (not gone, not a zombie).
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// The directory of an API server's ipc:// endpoint (its SPEC is on its command line).
std::string endpoint_dir(pid_t api_server) {
  std::ifstream cmdline("/proc/" + std::to_string(api_server) + "/cmdline");
  std::string arg;
  for (int i = 0; i < 3; ++i) std::getline(cmdline, arg, '\0');
  const std::string endpoint = Json::parse(arg).at("endpoint").get<std::string>();
  return std::filesystem::path(endpoint.substr(std::string("ipc://").size())).parent_path().string();
}

bool all_gone_within(const std::vector<pid_t>& pids, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    bool any = false;
    for (pid_t pid : pids) any = any || alive(pid);
    if (!any) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// The requests of the comparison: completions and chat completions, whole and streamed, greedy.
struct Case {
  std::string path;
  Json body;
};

std::vector<Case> cases() {
  const std::vector<std::string> prompts = {"And God said",         "In the beginning",    "The LORD is my shepherd",
                                            "Blessed are the meek", "And it came to pass", "Let there be light"};
  std::vector<Case> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    for (bool stream : {false, true}) {
      Json completion{{"model", "kjv"},
                      {"prompt", prompts[i]},
                      {"max_tokens", 12 + static_cast<int>(i)},
                      {"temperature", 0},
                      {"stream", stream}};
      if (i % 2 == 0) completion["logprobs"] = 2;
      if (stream) completion["stream_options"] = {{"include_usage", true}};
      out.push_back({"/v1/completions", completion});
      Json chat{{"model", "kjv"},
                {"messages", Json::array({{{"role", "user"}, {"content", prompts[i]}}})},
                {"max_tokens", 10 + static_cast<int>(i)},
                {"temperature", 0},
                {"stream", stream}};
      if (i == 1) chat["stop"] = Json::array({"the"});
      if (stream) chat["stream_options"] = {{"include_usage", true}};
      out.push_back({"/v1/chat/completions", chat});
    }
  }
  return out;
}

// An answer as compared: `exact` is the response (a whole one without its id and created; a
// stream's concatenated text and logprobs per event, its finish reasons, usage and [DONE]s);
// `shape` is the same with every floating-point number (the logprobs) as 0, and `numbers` those
// numbers in order.
struct Answer {
  std::string exact;
  std::string shape;
  std::vector<double> numbers;
  std::string api_server;  // its x-moeserve-api-server header; empty when absent
};

void take_floats(Json& json, std::vector<double>& out) {
  if (json.is_number_float()) {
    out.push_back(json.get<double>());
    json = 0.0;
  }
  if (json.is_structured()) {
    for (Json& item : json) take_floats(item, out);
  }
}

Answer comparable(const Case& c, const HttpResult& result) {
  Answer answer;
  if (auto it = result.headers.find("x-moeserve-api-server"); it != result.headers.end())
    answer.api_server = it->second;
  if (result.status != 200) {
    answer.exact = answer.shape = "status " + std::to_string(result.status) + ": " + result.body;
    return answer;
  }
  if (!c.body.value("stream", false)) {
    Json json = result.json();
    json.erase("id");
    json.erase("created");
    answer.exact = json.dump();
    take_floats(json, answer.numbers);
    answer.shape = json.dump();
    return answer;
  }
  std::string text, shape, finish, usage;
  int done = 0;
  for (const std::string& payload : testing::sse_payloads(result.body)) {
    if (payload == "[DONE]") {
      ++done;
      continue;
    }
    const Json chunk = Json::parse(payload);
    if (chunk.contains("usage") && !chunk["usage"].is_null()) usage = chunk["usage"].dump();
    for (const Json& choice : chunk.value("choices", Json::array())) {
      std::string piece;
      if (choice.contains("text")) piece = choice["text"].get<std::string>();
      if (choice.contains("delta") && choice["delta"].contains("content") && choice["delta"]["content"].is_string()) {
        piece = choice["delta"]["content"].get<std::string>();
      }
      text += piece;
      shape += piece;
      if (choice.contains("logprobs") && !choice["logprobs"].is_null()) {
        Json logprobs = choice["logprobs"];
        text += "|" + logprobs.dump();
        take_floats(logprobs, answer.numbers);
        shape += "|" + logprobs.dump();
      }
      if (choice.contains("finish_reason") && !choice["finish_reason"].is_null()) {
        finish += choice["finish_reason"].dump();
      }
    }
  }
  const std::string tail = " finish=" + finish + " usage=" + usage + " done=" + std::to_string(done);
  answer.exact = "text=" + text + tail;
  answer.shape = "text=" + shape + tail;
  return answer;
}

// Every case, all at once (one connection each) or one after the other; the answers in case order.
std::vector<Answer> answers(int port, bool concurrent) {
  const std::vector<Case> all = cases();
  std::vector<std::future<Answer>> futures;
  for (const Case& c : all) {
    futures.push_back(std::async(concurrent ? std::launch::async : std::launch::deferred, [port, c] {
      HttpClient client(port);
      return comparable(c, client.request("POST", c.path, c.body.dump()));
    }));
  }
  std::vector<Answer> out;
  for (auto& future : futures) out.push_back(future.get());
  return out;
}

// Alone in the engine, a request's logprobs are bit for bit the same; in a batch whose makeup
// depends on timing, its floats may differ in their last bits (the tokens never did here), so
// concurrent answers are compared exactly but for the logprob values, which are within 1e-4.
void expect_equal(const std::vector<Answer>& got, const std::vector<Answer>& expected, bool exact,
                  const std::string& what) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (exact) {
      EXPECT_EQ(got[i].exact, expected[i].exact) << what << " case " << i;
      continue;
    }
    EXPECT_EQ(got[i].shape, expected[i].shape) << what << " case " << i;
    ASSERT_EQ(got[i].numbers.size(), expected[i].numbers.size()) << what << " case " << i;
    for (size_t k = 0; k < got[i].numbers.size(); ++k) {
      EXPECT_NEAR(got[i].numbers[k], expected[i].numbers[k], 1e-4) << what << " case " << i << " number " << k;
    }
  }
}

std::string get(int port, const std::string& path) {
  HttpClient client(port);
  return client.request("GET", path).body;
}

double in_engine(const std::string& metrics) {
  return metric_value(metrics, "vllm:num_requests_running") + metric_value(metrics, "vllm:num_requests_waiting");
}

// /metrics over a new connection at a time until the engine's running + waiting requests are
// `count` (the gauges are set at the end of each engine step); the last text.
std::string metrics_when_in_engine(int port, double count, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string text = get(port, "/metrics");
  while (Clock::now() < deadline && in_engine(text) != count) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    text = get(port, "/metrics");
  }
  return text;
}

TEST(ApiServerCli, TwoApiServersAnswerLikeOneProcess) {
  std::vector<Answer> expected_alone, expected_together;
  std::string expected_tokenize, expected_models;
  const std::string tokenize_body = Json{{"model", "kjv"}, {"prompt", "And God said, Let there be light"}}.dump();
  {
    ServeProcess single(serve_args(0));
    expected_alone = answers(single.port(), false);
    expected_together = answers(single.port(), true);
    HttpClient client(single.port());
    expected_tokenize = client.request("POST", "/tokenize", tokenize_body).body;
    Json models = client.request("GET", "/v1/models").json();
    for (Json& card : models["data"]) card.erase("created");
    expected_models = models.dump();
    EXPECT_EQ(single.terminate(), 0);
  }
  for (const Answer& answer : expected_alone)
    ASSERT_EQ(answer.exact.rfind("status", 0), std::string::npos) << answer.exact;
  // One process answers the same alone and in a batch (the floats aside): the comparison holds.
  expect_equal(expected_together, expected_alone, false, "one process, concurrent vs alone");

  const auto started = Clock::now();
  ServeProcess server(serve_args(2));
  std::printf("--api-server-count 2 ready in %.1f s\n", std::chrono::duration<double>(Clock::now() - started).count());
  const std::vector<pid_t> pids = api_server_pids(server);
  ASSERT_EQ(pids.size(), 2u) << server.output();
  for (pid_t pid : pids) EXPECT_TRUE(alive(pid));
  EXPECT_NE(server.output().find("2 API server processes"), std::string::npos) << server.output();

  // One at a time: byte for byte, logprobs included. Then twice all at once. Every answer says
  // which API server gave it (one process's none), and both gave some.
  for (const Answer& answer : expected_alone) EXPECT_EQ(answer.api_server, "");
  std::map<std::string, int> answered_by;
  const std::vector<Answer> alone = answers(server.port(), false);
  expect_equal(alone, expected_alone, true, "alone");
  for (const Answer& answer : alone) ++answered_by[answer.api_server];
  for (int round = 0; round < 2; ++round) {
    const std::vector<Answer> together = answers(server.port(), true);
    expect_equal(together, expected_alone, false, "concurrent round " + std::to_string(round));
    for (const Answer& answer : together) ++answered_by[answer.api_server];
  }
  const int total_requests = 3 * static_cast<int>(expected_alone.size());
  {
    HttpClient client(server.port());
    EXPECT_EQ(client.request("POST", "/tokenize", tokenize_body).body, expected_tokenize);
    Json models = client.request("GET", "/v1/models").json();
    for (Json& card : models["data"]) card.erase("created");
    EXPECT_EQ(models.dump(), expected_models);
    EXPECT_EQ(client.request("GET", "/health").status, 200);
  }

  // Each scrape reaches one API server: the engine's metrics plus that server's own counter.
  std::map<std::string, double> per_server;
  for (int scrape = 0; scrape < 64 && per_server.size() < 2; ++scrape) {
    const std::string text = get(server.port(), "/metrics");
    EXPECT_EQ(metric_value(text, "vllm:num_requests_running"), 0) << text;
    EXPECT_GT(metric_value(text, "vllm:prompt_tokens_total"), 0) << text;
    for (const std::string index : {"0", "1"}) {
      const double value = metric_value(text, "moeserve:api_server_requests_total{api_server=\"" + index + "\"}");
      if (value >= 0) per_server[index] = value;
    }
  }
  ASSERT_EQ(per_server.size(), 2u) << "a scrape of each API server";
  EXPECT_GT(per_server["0"], 0);
  EXPECT_GT(per_server["1"], 0);
  EXPECT_EQ(per_server["0"] + per_server["1"], total_requests);
  // The headers agree with the counters: each server counted the requests it answered.
  EXPECT_EQ(answered_by.size(), 2u);
  EXPECT_EQ(answered_by["0"], per_server["0"]);
  EXPECT_EQ(answered_by["1"], per_server["1"]);

  // SIGTERM: everything stops, status 0, no API server left.
  EXPECT_EQ(server.terminate(), 0) << server.output();
  EXPECT_TRUE(all_gone_within(pids, std::chrono::milliseconds(2000)));
  EXPECT_NE(server.output().find("stopped"), std::string::npos) << server.output();
}

// A streamed request whose client reads the first event and then either hangs up or stops reading.
class StreamClient {
 public:
  StreamClient(int port, const Json& body) : client_(port) {
    std::string received;
    testing::start_stream(client_, body.dump(), received);
  }
  void hang_up() { client_.socket().close(); }

 private:
  HttpClient client_;
};

TEST(ApiServerCli, ClientsThatLeaveOrStallAbortAndBlockNoOne) {
  ServeProcess server(serve_args(2));
  const Json long_stream{
      {"model", "kjv"}, {"prompt", "And God said"}, {"max_tokens", 4000}, {"ignore_eos", true}, {"stream", true}};
  // Four streams (the kernel spreads their connections over both API servers); two clients hang
  // up, two stop reading.
  std::vector<std::unique_ptr<StreamClient>> streams;
  for (int i = 0; i < 4; ++i) streams.push_back(std::make_unique<StreamClient>(server.port(), long_stream));
  {
    const std::string text = metrics_when_in_engine(server.port(), 4, std::chrono::seconds(10));
    EXPECT_EQ(in_engine(text), 4) << text;
  }
  streams[0]->hang_up();
  streams[1]->hang_up();
  // The stalled clients block no other: short requests keep being answered promptly.
  for (int i = 0; i < 6; ++i) {
    const auto sent = Clock::now();
    HttpClient client(server.port());
    const HttpResult answer = client.request(
        "POST", "/v1/completions", Json{{"model", "kjv"}, {"prompt", "In the beginning"}, {"max_tokens", 4}}.dump());
    EXPECT_EQ(answer.status, 200) << answer.body;
    EXPECT_LE(Clock::now() - sent, std::chrono::seconds(10));
  }
  // The two that hung up are gone from the engine; the two stalled ones still run.
  {
    const std::string text = metrics_when_in_engine(server.port(), 2, std::chrono::seconds(10));
    EXPECT_EQ(in_engine(text), 2) << text;
  }
  streams[2]->hang_up();
  streams[3]->hang_up();
  const std::string idle = metrics_when_in_engine(server.port(), 0, std::chrono::seconds(10));
  EXPECT_EQ(metric_value(idle, "vllm:num_requests_running"), 0) << idle;
  EXPECT_EQ(metric_value(idle, "vllm:num_requests_waiting"), 0) << idle;
  EXPECT_EQ(metric_value(idle, "vllm:kv_cache_usage_perc"), 0) << idle;
  EXPECT_EQ(server.terminate(), 0) << server.output();
}

TEST(ApiServerCli, KilledApiServerEndsTheServeWithStatusOne) {
  ServeProcess server(serve_args(2));
  const std::vector<pid_t> pids = api_server_pids(server);
  ASSERT_EQ(pids.size(), 2u) << server.output();
  // A request in flight on whichever API server takes it.
  auto in_flight = std::async(std::launch::async, [&]() -> int {
    try {
      HttpClient client(server.port());
      return client
          .request(
              "POST", "/v1/completions",
              Json{{"model", "kjv"}, {"prompt", "And God said"}, {"max_tokens", 4000}, {"ignore_eos", true}}.dump())
          .status;
    } catch (const std::exception&) {
      return -1;  // its API server was the one killed
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto killed_at = Clock::now();
  ASSERT_EQ(::kill(pids[1], SIGKILL), 0);
  const int status = server.wait_exit(std::chrono::seconds(10));
  EXPECT_LE(Clock::now() - killed_at, std::chrono::seconds(10));
  EXPECT_EQ(status, 1) << server.output();
  EXPECT_NE(server.output().find(fmt::format("API server 1 (pid {}) was killed by signal 9", pids[1])),
            std::string::npos)
      << server.output();
  EXPECT_NE(server.output().find("[critical]"), std::string::npos) << server.output();
  EXPECT_FALSE(alive(pids[0])) << "API server 0 outlived the serve";
  ASSERT_EQ(in_flight.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  const int answer = in_flight.get();
  EXPECT_TRUE(answer == 503 || answer == -1) << answer;
}

TEST(ApiServerCli, EngineProcessKilledApiServersAnswer503AndExit) {
  ServeProcess server(serve_args(2));
  const std::vector<pid_t> pids = api_server_pids(server);
  ASSERT_EQ(pids.size(), 2u) << server.output();
  std::vector<std::future<HttpResult>> in_flight = long_requests(server.port(), 4);
  const std::string dir = endpoint_dir(pids[0]);
  EXPECT_TRUE(std::filesystem::exists(dir)) << dir;
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const auto killed_at = Clock::now();
  ASSERT_EQ(::kill(server.pid(), SIGKILL), 0);
  for (auto& request : in_flight) {
    ASSERT_EQ(request.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    const HttpResult answer = request.get();
    EXPECT_EQ(answer.status, 503) << answer.body;
    EXPECT_NE(answer.body.find("the engine process"), std::string::npos) << answer.body;
  }
  EXPECT_TRUE(all_gone_within(pids, std::chrono::milliseconds(8000))) << server.output();
  EXPECT_LE(Clock::now() - killed_at, std::chrono::seconds(10));
  server.wait_exit(std::chrono::seconds(10));  // reaps the leader; its output pipe closes with the API servers
  EXPECT_NE(server.output().find("the engine process (pid"), std::string::npos) << server.output();
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir << ": the API servers remove a killed engine's endpoint";
}

// A port another process listens on is refused, not shared through SO_REUSEPORT.
TEST(ApiServerCli, TakenPortIsRefused) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor taken(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const int port = taken.local_endpoint().port();
  std::vector<std::string> args = {
      "serve", testing::demo_model(), "--host", "127.0.0.1", "--port", std::to_string(port), "--threads",
      "2",     "--api-server-count",  "2"};
  const testing::CommandResult run = testing::run_moeserve(args, {.timeout_s = 120});
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find(fmt::format("cannot listen on --host 127.0.0.1 --port {}: Address already in use", port)),
            std::string::npos)
      << run.output;
  EXPECT_EQ(run.output.find("[api server"), std::string::npos) << run.output;  // none started
}

// --distributed-executor-backend mp behind two API servers: a rank's worker killed fails the
// engine, which tells every API server: each answers its requests with 503 and the reason, and
// the whole serve exits 1 within 10 s, with no process left.
// The live page behind API-server processes shows what one process's shows: with expert
// parallelism (-dp 2 --enable-expert-parallel) the /live stream's ticks carry the engine's EP
// counters (2 ranks, the tokens each computed, the balancedness).
TEST(ApiServerCli, LivePageShowsTheEnginesExpertParallelism) {
  std::vector<std::string> args = serve_args(2);
  args.insert(args.end(), {"-dp", "2", "--enable-expert-parallel"});
  ServeProcess server(args);
  {
    HttpClient client(server.port());
    const HttpResult answer = client.request(
        "POST", "/v1/completions", Json{{"model", "kjv"}, {"prompt", "In the beginning"}, {"max_tokens", 8}}.dump());
    ASSERT_EQ(answer.status, 200) << answer.body;
  }
  testing::LiveReader reader(server.port());
  // The first event whose EP counters include the request: the hello may still carry the counters
  // of the API server's tick before it (pushed every 250 ms, the page ticks every second).
  Json ep;
  const auto computed = [](const Json& counters) {
    int64_t total = 0;
    for (const Json& tokens : counters["rank_tokens_total"]) total += tokens.get<int64_t>();
    return total;
  };
  for (size_t count = 1; count <= 20 && ep.is_null(); ++count) {
    const std::vector<Json>& events = reader.events(count);
    if (events.size() < count) break;
    const Json& event = events[count - 1];
    if (event.contains("ep") && !event["ep"].is_null() && computed(event["ep"]) > 0) ep = event["ep"];
  }
  ASSERT_FALSE(ep.is_null()) << reader.raw();
  EXPECT_EQ(ep["ranks"], 2) << ep.dump();
  EXPECT_GT(ep["balancedness"].get<double>(), 0.0) << ep.dump();
  reader.close();
  EXPECT_EQ(server.terminate(), 0) << server.output();
}

TEST(ApiServerCli, EngineFailureReachesEveryApiServer) {
  std::vector<std::string> args = serve_args(2);
  args.insert(args.end(), {"-tp", "2", "--distributed-executor-backend", "mp"});
  ServeProcess server(args);
  const std::vector<pid_t> pids = api_server_pids(server);
  ASSERT_EQ(pids.size(), 2u) << server.output();
  const std::vector<pid_t> workers = testing::children_of(server.pid(), "_worker");
  ASSERT_EQ(workers.size(), 2u) << server.output();
  const std::string dir = endpoint_dir(pids[0]);
  {
    HttpClient client(server.port());
    const HttpResult answer = client.request(
        "POST", "/v1/completions", Json{{"model", "kjv"}, {"prompt", "In the beginning"}, {"max_tokens", 4}}.dump());
    EXPECT_EQ(answer.status, 200) << answer.body;
  }
  std::vector<std::future<HttpResult>> in_flight = long_requests(server.port(), 6);
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const auto killed_at = Clock::now();
  ASSERT_EQ(::kill(workers[1], SIGKILL), 0);
  for (auto& request : in_flight) {
    ASSERT_EQ(request.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    const HttpResult answer = request.get();
    EXPECT_EQ(answer.status, 503) << answer.body;
    EXPECT_NE(answer.body.find("the engine failed: rank 1's worker"), std::string::npos) << answer.body;
  }
  const int status = server.wait_exit(std::chrono::seconds(10));
  EXPECT_LE(Clock::now() - killed_at, std::chrono::seconds(10));
  EXPECT_EQ(status, 1) << server.output();
  EXPECT_NE(server.output().find("[api server 0] the engine failed"), std::string::npos) << server.output();
  EXPECT_NE(server.output().find("[api server 1] the engine failed"), std::string::npos) << server.output();
  std::vector<pid_t> all = pids;
  all.push_back(workers[0]);
  EXPECT_TRUE(all_gone_within(all, std::chrono::milliseconds(1000)));
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
}

}  // namespace
}  // namespace moeserve

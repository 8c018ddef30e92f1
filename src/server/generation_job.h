// GenerationJob: one OpenAI completions/chat request in flight — its engine requests (one per
// choice), the outputs coming back from the engine thread, and what they become on the io
// thread: SSE chunks as they arrive, or one JSON response when every choice has finished.
// Invariant: every engine request this job submitted is either finished (its `finished` output
// seen) or has been aborted by cancel(); outputs after cancel() are dropped.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine_client.h"
#include "server/http_message.h"
#include "server/io_dispatcher.h"
#include "server/openai_protocol.h"
#include "server/openai_responses.h"
#include "server/harmony_parser.h"
#include "server/reasoning_parser.h"
#include "server/tool_call_parser.h"

namespace moeserve {

// Implemented by the HTTP session; called on the io thread only.
class JobSink {
 public:
  virtual ~JobSink() = default;
  virtual void job_stream_data(std::string data) = 0;  // SSE bytes (streaming jobs)
  // The end: the complete response of a non-streaming job, nullopt for a stream (its last
  // bytes, `data: [DONE]`, came through job_stream_data).
  virtual void job_finished(std::optional<HttpResponse> response) = 0;
};

struct JobSpec {
  ApiKind kind = ApiKind::kCompletion;
  std::string response_id;  // cmpl-... / chatcmpl-...
  std::string model_name;
  int64_t created = 0;
  bool stream = false;
  bool include_usage = false;
  bool continuous_usage_stats = false;
  bool logprobs = false;
  std::vector<GenerationRequest> requests;  // index = choice index
  std::vector<std::string> echo_text;      // per choice; completions `echo` ("" otherwise)
  std::vector<int> choice_prompt_tokens;   // per choice: its prompt's length
  int num_prompt_tokens = 0;               // usage: each prompt counted once
  // Chat with --reasoning-parser: each choice's answer split into reasoning and content (this
  // splitter, copied per choice, has seen nothing yet).
  std::optional<ReasoningSplitter> reasoning;
  // Chat with --enable-auto-tool-choice and tools: the content's tool-call markup parsed.
  ToolCallParser tool_call_parser = ToolCallParser::kNone;
  Json tools;  // the request's tools, for a parser that types arguments by their schemas
  // Chat with a GPT-OSS model: each choice's harmony answer split (instead of the two above).
  std::optional<HarmonySplitter> harmony;
};

// Where a job stands, for the live page's requests in flight (GenerationJob::progress).
struct JobProgress {
  std::string id;
  ApiKind kind = ApiKind::kCompletion;
  bool stream = false;
  int choices = 0;
  int prompt_tokens = 0;  // each prompt counted once
  int output_tokens = 0;  // all choices so far
  double age_s = 0;       // since start()
  double ttft_s = -1;     // start() to the first output token; -1 before it
};

class GenerationJob : public std::enable_shared_from_this<GenerationJob> {
 public:
  using Clock = std::chrono::steady_clock;
  GenerationJob(JobSpec spec, std::shared_ptr<const Tokenizer> tokenizer, std::shared_ptr<IoDispatcher> dispatcher);

  bool stream() const { return spec_.stream; }
  const std::string& id() const { return spec_.response_id; }
  // Submits every choice; on an error aborts those already submitted and returns it.
  std::optional<ApiError> start(EngineClient& engine, std::weak_ptr<JobSink> sink);
  // Aborts every unfinished choice (the client went away, or the server is stopping).
  void cancel(EngineClient& engine);
  bool done() const { return done_; }
  // Unfinished and not cancelled (io thread).
  bool in_flight() const { return !done_ && !cancelled_; }
  JobProgress progress(Clock::time_point now) const;  // io thread

 private:
  struct Choice {
    std::string text;
    CompletionLogprobs completion_logprobs;
    Json chat_logprobs = Json::array();
    int num_output_tokens = 0;
    bool finished = false;
    FinishReason finish_reason = FinishReason::kStop;
    Json stop_reason;
    std::string error;
    bool started = false;  // stream: echo / role already sent
    std::optional<ReasoningSplitter> reasoning;  // spec_.reasoning's copy
    ToolCallStream tools{ToolCallParser::kNone};  // stream: content held from the first call on
    std::optional<HarmonySplitter> harmony;       // spec_.harmony's copy
  };

  void enqueue(int choice, RequestOutput output);  // engine thread
  void drain();                                    // io thread
  void handle(int choice_idx, RequestOutput& output);
  void stream_output(int choice_idx, const RequestOutput& output);
  void stream_begin(int choice_idx);
  void finish();
  Json chunk_header() const;
  Json choice_usage(int choice_idx) const;
  // OpenAI's tool_calls entries of `calls` (stream deltas number them: with_index).
  static Json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index);
  HttpResponse final_response() const;
  int total_output_tokens() const;

  JobSpec spec_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::shared_ptr<IoDispatcher> dispatcher_;
  std::weak_ptr<JobSink> sink_;

  // io-thread state
  std::vector<Choice> choices_;
  int num_finished_ = 0;
  bool cancelled_ = false;
  bool done_ = false;
  Clock::time_point started_at_{};
  std::optional<Clock::time_point> first_token_at_;

  // Engine → io handoff.
  std::mutex mutex_;
  std::vector<std::pair<int, RequestOutput>> pending_;
  bool drain_posted_ = false;
};

}  // namespace moeserve

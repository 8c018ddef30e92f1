// GenerationJob: engine outputs → OpenAI chunks / responses.
#include "server/generation_job.h"

#include <fmt/format.h>

namespace moeserve {
namespace {

// A chat message's (or delta's) reasoning fields: vLLM's `reasoning` and its older name.
void set_reasoning(Json& message, const std::string& reasoning) {
  const Json value = reasoning.empty() ? Json() : Json(reasoning);
  message["reasoning"] = value;
  message["reasoning_content"] = value;
}

}  // namespace

GenerationJob::GenerationJob(JobSpec spec, std::shared_ptr<const Tokenizer> tokenizer,
                             std::shared_ptr<IoDispatcher> dispatcher)
    : spec_(std::move(spec)), tokenizer_(std::move(tokenizer)), dispatcher_(std::move(dispatcher)) {
  choices_.resize(spec_.requests.size());
  for (size_t idx = 0; idx < choices_.size(); ++idx) {
    // Completions text offsets count from the start of the returned text (after the echo).
    const int offset = idx < spec_.echo_text.size() ? static_cast<int>(spec_.echo_text[idx].size()) : 0;
    choices_[idx].completion_logprobs = CompletionLogprobs(offset);
    choices_[idx].reasoning = spec_.reasoning;
    choices_[idx].tools = ToolCallStream(spec_.tool_call_parser, spec_.tools);
    choices_[idx].harmony = spec_.harmony;
  }
}

std::optional<ApiError> GenerationJob::start(EngineClient& engine, std::weak_ptr<JobSink> sink) {
  sink_ = std::move(sink);
  started_at_ = Clock::now();
  for (size_t idx = 0; idx < spec_.requests.size(); ++idx) {
    // The callback keeps the job alive until the request's finished output.
    auto self = shared_from_this();
    Status status = engine.submit(spec_.requests[idx], [self, idx](RequestOutput output) {
      self->enqueue(static_cast<int>(idx), std::move(output));
    });
    if (!status.ok()) {
      cancelled_ = true;
      for (size_t prior = 0; prior < idx; ++prior) engine.abort(spec_.requests[prior].request_id);
      return bad_request(status.error().message);
    }
  }
  // Chat streams open with a role delta per choice even before the first token.
  if (spec_.stream) {
    std::lock_guard lock(mutex_);
    if (!drain_posted_) {
      drain_posted_ = true;
      dispatcher_->post([self = shared_from_this()] { self->drain(); });
    }
  }
  return std::nullopt;
}

void GenerationJob::cancel(EngineClient& engine) {
  if (cancelled_ || done_) return;
  cancelled_ = true;
  for (size_t idx = 0; idx < choices_.size(); ++idx) {
    if (!choices_[idx].finished) engine.abort(spec_.requests[idx].request_id);
  }
}

void GenerationJob::enqueue(int choice, RequestOutput output) {
  std::lock_guard lock(mutex_);
  pending_.emplace_back(choice, std::move(output));
  if (drain_posted_) return;
  drain_posted_ = true;
  dispatcher_->post([self = shared_from_this()] { self->drain(); });
}

void GenerationJob::drain() {
  std::vector<std::pair<int, RequestOutput>> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(pending_);
    drain_posted_ = false;
  }
  if (cancelled_ || done_) return;
  if (spec_.stream) {
    for (size_t idx = 0; idx < choices_.size(); ++idx) stream_begin(static_cast<int>(idx));
  }
  for (auto& [choice, output] : batch) {
    handle(choice, output);
    if (done_) return;
  }
}

void GenerationJob::handle(int choice_idx, RequestOutput& output) {
  Choice& choice = choices_[choice_idx];
  if (choice.finished) return;
  choice.num_output_tokens = output.num_output_tokens;
  if (!first_token_at_ && output.num_output_tokens > 0) first_token_at_ = Clock::now();
  if (spec_.stream) {
    if (output.finished) {
      choice.finished = true;
      choice.finish_reason = output.finish_reason.value_or(FinishReason::kStop);
      choice.error = output.error;
    }
    stream_output(choice_idx, output);
  } else {
    choice.text += output.new_text;
    if (spec_.logprobs) {
      if (spec_.kind == ApiKind::kCompletion) {
        choice.completion_logprobs.append(*tokenizer_, output.new_logprobs);
      } else {
        for (Json& entry : chat_logprob_entries(*tokenizer_, output.new_logprobs)) choice.chat_logprobs.push_back(entry);
      }
    }
    if (output.finished) {
      choice.finished = true;
      choice.finish_reason = output.finish_reason.value_or(FinishReason::kStop);
      choice.stop_reason = stop_reason_json(output);
      choice.error = output.error;
    }
  }
  if (choice.finished && ++num_finished_ == static_cast<int>(choices_.size())) finish();
}

JobProgress GenerationJob::progress(Clock::time_point now) const {
  JobProgress progress;
  progress.id = spec_.response_id;
  progress.kind = spec_.kind;
  progress.stream = spec_.stream;
  progress.choices = static_cast<int>(choices_.size());
  progress.prompt_tokens = spec_.num_prompt_tokens;
  progress.output_tokens = total_output_tokens();
  progress.age_s = std::chrono::duration<double>(now - started_at_).count();
  if (first_token_at_) progress.ttft_s = std::chrono::duration<double>(*first_token_at_ - started_at_).count();
  return progress;
}

Json GenerationJob::chunk_header() const {
  Json chunk;
  chunk["id"] = spec_.response_id;
  chunk["object"] = spec_.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion";
  chunk["created"] = spec_.created;
  chunk["model"] = spec_.model_name;
  return chunk;
}

Json GenerationJob::choice_usage(int choice_idx) const {
  return usage_json(spec_.choice_prompt_tokens[choice_idx], choices_[choice_idx].num_output_tokens);
}

int GenerationJob::total_output_tokens() const {
  int total = 0;
  for (const Choice& choice : choices_) total += choice.num_output_tokens;
  return total;
}

// Chat: the assistant role with empty content; completions with echo: the prompt text.
void GenerationJob::stream_begin(int choice_idx) {
  Choice& choice = choices_[choice_idx];
  if (choice.started) return;
  choice.started = true;
  if (spec_.kind != ApiKind::kChat) return;
  Json chunk = chunk_header();
  Json entry;
  entry["index"] = choice_idx;
  entry["delta"] = Json{{"role", "assistant"}, {"content", ""}};
  entry["logprobs"] = nullptr;
  entry["finish_reason"] = nullptr;
  chunk["choices"] = Json::array({entry});
  if (spec_.continuous_usage_stats) chunk["usage"] = choice_usage(choice_idx);
  if (auto sink = sink_.lock()) sink->job_stream_data(sse_event(chunk));
}

void GenerationJob::stream_output(int choice_idx, const RequestOutput& output) {
  Choice& choice = choices_[choice_idx];
  std::string text = output.new_text;
  if (choice_idx < static_cast<int>(spec_.echo_text.size()) && !spec_.echo_text[choice_idx].empty()) {
    text = spec_.echo_text[choice_idx] + text;
    spec_.echo_text[choice_idx].clear();
  }
  if (output.finished && choice.finish_reason == FinishReason::kError) {
    // Tell the client in OpenAI's error shape inside the stream, as vLLM does.
    Json error = Json::parse(internal_error(output.error.empty() ? "generation failed" : output.error).to_json());
    if (auto sink = sink_.lock()) sink->job_stream_data(sse_event(error));
    return;
  }
  const bool has_logprobs = spec_.logprobs && !output.new_logprobs.empty();
  ReasoningSplitter::Delta split{.content = text};
  const std::vector<ToolCall>* calls = &choice.tools.calls();
  if (choice.harmony) {
    split = choice.harmony->push(text, output.finished);
    calls = &choice.harmony->calls();
  } else {
    if (choice.reasoning) split = choice.reasoning->push(text, output.finished);
    if (spec_.kind == ApiKind::kChat) split.content = choice.tools.push(split.content, output.finished);
  }
  const bool called = output.finished && !calls->empty();
  if (split.reasoning.empty() && split.content.empty() && !output.finished && !has_logprobs) return;
  Json entry;
  entry["index"] = choice_idx;
  if (spec_.kind == ApiKind::kChat) {
    Json delta = Json::object();
    if (!split.reasoning.empty()) set_reasoning(delta, split.reasoning);
    if (!split.content.empty()) delta["content"] = split.content;
    if (called) delta["tool_calls"] = tool_calls_json(*calls, true);
    entry["delta"] = std::move(delta);
    entry["logprobs"] = has_logprobs ? Json{{"content", chat_logprob_entries(*tokenizer_, output.new_logprobs)}} : Json();
  } else {
    entry["text"] = text;
    if (has_logprobs) {
      choice.completion_logprobs.clear_keep_offset();
      choice.completion_logprobs.append(*tokenizer_, output.new_logprobs);
      entry["logprobs"] = choice.completion_logprobs.to_json();
    } else {
      entry["logprobs"] = nullptr;
    }
  }
  entry["finish_reason"] = called ? Json("tool_calls")
                          : output.finished ? Json(openai_finish_reason(choice.finish_reason))
                                            : Json();
  entry["stop_reason"] = output.finished ? stop_reason_json(output) : Json();
  Json chunk = chunk_header();
  chunk["choices"] = Json::array({entry});
  if (spec_.continuous_usage_stats) chunk["usage"] = choice_usage(choice_idx);
  if (auto sink = sink_.lock()) sink->job_stream_data(sse_event(chunk));
}

HttpResponse GenerationJob::final_response() const {
  for (const Choice& choice : choices_) {
    if (choice.finish_reason == FinishReason::kError) {
      return error_response(internal_error(choice.error.empty() ? "generation failed" : choice.error));
    }
  }
  Json body;
  body["id"] = spec_.response_id;
  body["object"] = spec_.kind == ApiKind::kChat ? "chat.completion" : "text_completion";
  body["created"] = spec_.created;
  body["model"] = spec_.model_name;
  Json choices = Json::array();
  for (size_t idx = 0; idx < choices_.size(); ++idx) {
    const Choice& choice = choices_[idx];
    Json entry;
    entry["index"] = idx;
    bool called = false;  // tool calls parsed out of the answer
    if (spec_.kind == ApiKind::kChat) {
      entry["message"] = Json{{"role", "assistant"}, {"content", choice.text}};
      ReasoningSplitter::Delta split{.content = choice.text};
      ToolCallSplit calls;
      if (spec_.harmony) {
        HarmonySplitter harmony = *spec_.harmony;
        split = harmony.push(choice.text, true);
        calls = ToolCallSplit{split.content, harmony.calls()};
      } else {
        if (choice.reasoning) split = ReasoningSplitter(*choice.reasoning).push(choice.text, true);
        calls = split_tool_calls(spec_.tool_call_parser, split.content, spec_.tools);
      }
      called = !calls.calls.empty();
      const bool reasoning = choice.reasoning || spec_.harmony;
      if (reasoning || called) {
        entry["message"]["content"] = calls.content.empty() ? Json() : Json(calls.content);
      }
      if (called) entry["message"]["tool_calls"] = tool_calls_json(calls.calls, false);
      if (reasoning) set_reasoning(entry["message"], split.reasoning);
      entry["logprobs"] = spec_.logprobs ? Json{{"content", choice.chat_logprobs}} : Json();
    } else {
      const std::string& echo = idx < spec_.echo_text.size() ? spec_.echo_text[idx] : std::string();
      entry["text"] = echo + choice.text;
      entry["logprobs"] = spec_.logprobs ? choice.completion_logprobs.to_json() : Json();
    }
    entry["finish_reason"] = called ? "tool_calls" : openai_finish_reason(choice.finish_reason);
    entry["stop_reason"] = choice.stop_reason;
    choices.push_back(std::move(entry));
  }
  body["choices"] = std::move(choices);
  body["usage"] = usage_json(spec_.num_prompt_tokens, total_output_tokens());
  return json_response(200, dump_json(body));
}

Json GenerationJob::tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  Json out = Json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    Json call;
    if (with_index) call["index"] = i;  // stream deltas number their calls
    call["id"] = calls[i].id.empty() ? random_id("chatcmpl-tool-") : calls[i].id;
    call["type"] = "function";
    call["function"] = Json{{"name", calls[i].name}, {"arguments", calls[i].arguments}};
    out.push_back(std::move(call));
  }
  return out;
}

void GenerationJob::finish() {
  done_ = true;
  auto sink = sink_.lock();
  if (!sink) return;
  if (!spec_.stream) {
    sink->job_finished(final_response());
    return;
  }
  if (spec_.include_usage) {
    Json chunk = chunk_header();
    chunk["choices"] = Json::array();
    chunk["usage"] = usage_json(spec_.num_prompt_tokens, total_output_tokens());
    sink->job_stream_data(sse_event(chunk));
  }
  sink->job_stream_data(kSseDone);
  sink->job_finished(std::nullopt);
}

}  // namespace moeserve

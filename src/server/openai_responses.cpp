// JSON builders for OpenAI responses.
#include "server/openai_responses.h"

#include <cmath>
#include <random>

#include <fmt/format.h>

namespace moeserve {
namespace {

// JSON has no -inf; vLLM reports such logprobs as -9999.0.
double finite_logprob(float logprob) { return std::isfinite(logprob) ? logprob : -9999.0; }

std::string token_text(const Tokenizer& tokenizer, int32_t id) {
  const int32_t ids[] = {id};
  return tokenizer.decode(ids, false);
}

Json token_bytes(const std::string& text) {
  Json bytes = Json::array();
  for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
  return bytes;
}

}  // namespace

void CompletionLogprobs::append(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& logprobs) {
  for (const TokenLogprob& entry : logprobs) {
    const std::string text = token_text(tokenizer, entry.token_id);
    tokens_.push_back(text);
    token_logprobs_.push_back(finite_logprob(entry.logprob));
    // The chosen token is always listed with the alternatives, as OpenAI documents.
    Json top = Json::object();
    for (const auto& [id, logprob] : entry.top) top[token_text(tokenizer, id)] = finite_logprob(logprob);
    if (!top.contains(text)) top[text] = finite_logprob(entry.logprob);
    top_logprobs_.push_back(std::move(top));
    text_offset_.push_back(next_offset_);
    next_offset_ += static_cast<int>(text.size());
  }
}

Json CompletionLogprobs::to_json() const {
  Json out;
  out["text_offset"] = text_offset_;
  out["token_logprobs"] = token_logprobs_;
  out["tokens"] = tokens_;
  out["top_logprobs"] = top_logprobs_;
  return out;
}

void CompletionLogprobs::clear_keep_offset() {
  tokens_ = Json::array();
  token_logprobs_ = Json::array();
  top_logprobs_ = Json::array();
  text_offset_ = Json::array();
}

Json chat_logprob_entries(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& logprobs) {
  Json entries = Json::array();
  for (const TokenLogprob& entry : logprobs) {
    Json item;
    const std::string text = token_text(tokenizer, entry.token_id);
    item["token"] = text;
    item["logprob"] = finite_logprob(entry.logprob);
    item["bytes"] = token_bytes(text);
    Json top = Json::array();
    for (const auto& [id, logprob] : entry.top) {
      Json alternative;
      const std::string alternative_text = token_text(tokenizer, id);
      alternative["token"] = alternative_text;
      alternative["logprob"] = finite_logprob(logprob);
      alternative["bytes"] = token_bytes(alternative_text);
      top.push_back(std::move(alternative));
    }
    item["top_logprobs"] = std::move(top);
    entries.push_back(std::move(item));
  }
  return entries;
}

Json usage_json(int prompt_tokens, int completion_tokens) {
  Json usage;
  usage["prompt_tokens"] = prompt_tokens;
  usage["total_tokens"] = prompt_tokens + completion_tokens;
  usage["completion_tokens"] = completion_tokens;
  usage["prompt_tokens_details"] = nullptr;
  return usage;
}

const char* openai_finish_reason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "error";
}

Json stop_reason_json(const RequestOutput& output) {
  if (output.stop_reason_text) return *output.stop_reason_text;
  if (output.stop_reason_token) return *output.stop_reason_token;
  return nullptr;
}

std::string dump_json(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string sse_event(const Json& payload) { return "data: " + dump_json(payload) + "\n\n"; }

std::string random_id(const std::string& prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}{:016x}", prefix, rng(), rng());
}

}  // namespace moeserve

// The request/output codec between API-server processes and the engine (request_codec.h).
#include "engine/request_codec.h"

#include <stdexcept>

namespace moeserve::codec {

namespace {

template <typename T>
void put_optional(mp::Writer& out, const std::optional<T>& value) {
  out.put<uint8_t>(value.has_value());
  if (value) out.put<T>(*value);
}

template <typename T>
std::optional<T> get_optional(mp::Reader& in) {
  const uint8_t present = in.get<uint8_t>();
  if (present > 1) throw std::runtime_error("control message: bad optional flag");
  if (!present) return std::nullopt;
  return in.get<T>();
}

bool get_bool(mp::Reader& in) {
  const uint8_t value = in.get<uint8_t>();
  if (value > 1) throw std::runtime_error("control message: bad boolean");
  return value != 0;
}

}  // namespace

void put_string(mp::Writer& out, const std::string& text) {
  out.put_array<char>(std::span<const char>(text.data(), text.size()));
}

std::string get_string(mp::Reader& in) {
  const std::vector<char> bytes = in.get_array<char>();
  return std::string(bytes.begin(), bytes.end());
}

void encode(mp::Writer& out, const GenerationRequest& request) {
  put_string(out, request.request_id);
  out.put_array<int32_t>(request.prompt_ids);
  const SamplingParams& s = request.sampling;
  out.put<float>(s.temperature);
  out.put<float>(s.top_p);
  out.put<int32_t>(s.top_k);
  out.put<float>(s.min_p);
  out.put<float>(s.presence_penalty);
  out.put<float>(s.frequency_penalty);
  out.put<float>(s.repetition_penalty);
  put_optional<uint64_t>(out, s.seed);
  const StopParams& stop = request.stop;
  out.put<int32_t>(stop.max_tokens);
  out.put<int32_t>(stop.min_tokens);
  out.put<uint64_t>(stop.stop.size());
  for (const std::string& text : stop.stop) put_string(out, text);
  out.put_array<int32_t>(stop.stop_token_ids);
  out.put<uint8_t>(stop.ignore_eos);
  out.put<uint8_t>(stop.include_stop_str_in_output);
  out.put<uint8_t>(stop.skip_special_tokens);
  put_optional<int32_t>(out, request.logprobs);
}

GenerationRequest decode_request(mp::Reader& in) {
  GenerationRequest request;
  request.request_id = get_string(in);
  request.prompt_ids = in.get_array<int32_t>();
  SamplingParams& s = request.sampling;
  s.temperature = in.get<float>();
  s.top_p = in.get<float>();
  s.top_k = in.get<int32_t>();
  s.min_p = in.get<float>();
  s.presence_penalty = in.get<float>();
  s.frequency_penalty = in.get<float>();
  s.repetition_penalty = in.get<float>();
  s.seed = get_optional<uint64_t>(in);
  StopParams& stop = request.stop;
  stop.max_tokens = in.get<int32_t>();
  stop.min_tokens = in.get<int32_t>();
  const uint64_t num_stop = in.get<uint64_t>();
  // Each string takes at least its 8-byte length.
  if (num_stop > in.left() / sizeof(uint64_t)) throw std::runtime_error("control message: stop strings past its end");
  for (uint64_t i = 0; i < num_stop; ++i) stop.stop.push_back(get_string(in));
  stop.stop_token_ids = in.get_array<int32_t>();
  stop.ignore_eos = get_bool(in);
  stop.include_stop_str_in_output = get_bool(in);
  stop.skip_special_tokens = get_bool(in);
  request.logprobs = get_optional<int32_t>(in);
  return request;
}

void encode(mp::Writer& out, const RequestOutput& output) {
  put_string(out, output.request_id);
  out.put_array<int32_t>(output.new_token_ids);
  put_string(out, output.new_text);
  out.put<uint64_t>(output.new_logprobs.size());
  for (const TokenLogprob& logprob : output.new_logprobs) {
    out.put<int32_t>(logprob.token_id);
    out.put<float>(logprob.logprob);
    out.put<uint64_t>(logprob.top.size());
    for (const auto& [id, value] : logprob.top) {
      out.put<int32_t>(id);
      out.put<float>(value);
    }
  }
  out.put<uint8_t>(output.finished);
  std::optional<uint8_t> reason;
  if (output.finish_reason) reason = static_cast<uint8_t>(*output.finish_reason);
  put_optional<uint8_t>(out, reason);
  out.put<uint8_t>(output.stop_reason_text.has_value());
  if (output.stop_reason_text) put_string(out, *output.stop_reason_text);
  put_optional<int32_t>(out, output.stop_reason_token);
  put_string(out, output.error);
  out.put<int32_t>(output.num_prompt_tokens);
  out.put<int32_t>(output.num_output_tokens);
  out.put<int32_t>(output.num_cached_tokens);
}

RequestOutput decode_output(mp::Reader& in) {
  RequestOutput output;
  output.request_id = get_string(in);
  output.new_token_ids = in.get_array<int32_t>();
  output.new_text = get_string(in);
  const uint64_t num_logprobs = in.get<uint64_t>();
  // Each entry takes at least 16 bytes (id, logprob, count).
  if (num_logprobs > in.left() / 16) throw std::runtime_error("control message: logprobs past its end");
  output.new_logprobs.resize(num_logprobs);
  for (TokenLogprob& logprob : output.new_logprobs) {
    logprob.token_id = in.get<int32_t>();
    logprob.logprob = in.get<float>();
    const uint64_t num_top = in.get<uint64_t>();
    if (num_top > in.left() / 8) throw std::runtime_error("control message: top logprobs past its end");
    logprob.top.resize(num_top);
    for (auto& [id, value] : logprob.top) {
      id = in.get<int32_t>();
      value = in.get<float>();
    }
  }
  output.finished = get_bool(in);
  if (const auto reason = get_optional<uint8_t>(in)) {
    if (*reason > static_cast<uint8_t>(FinishReason::kError)) throw std::runtime_error("control message: bad finish reason");
    output.finish_reason = static_cast<FinishReason>(*reason);
  }
  if (get_bool(in)) output.stop_reason_text = get_string(in);
  output.stop_reason_token = get_optional<int32_t>(in);
  output.error = get_string(in);
  output.num_prompt_tokens = in.get<int32_t>();
  output.num_output_tokens = in.get<int32_t>();
  output.num_cached_tokens = in.get<int32_t>();
  return output;
}

void encode(mp::Writer& out, const EngineStats& stats) {
  out.put<int32_t>(stats.num_running);
  out.put<int32_t>(stats.num_waiting);
  out.put<double>(stats.kv_cache_usage);
}

EngineStats decode_stats(mp::Reader& in) {
  EngineStats stats;
  stats.num_running = in.get<int32_t>();
  stats.num_waiting = in.get<int32_t>();
  stats.kv_cache_usage = in.get<double>();
  return stats;
}

}  // namespace moeserve::codec

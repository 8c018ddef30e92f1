// The binary codec of what crosses between an API-server process and the engine process
// (--api-server-count N > 1, src/apiserver/): a GenerationRequest one way, RequestOutputs and
// EngineStats the other. Both sides are the same binary on the same host, so integers and floats
// travel in this host's representation (mp::Writer / mp::Reader, runtime/mp/wire.h); strings and
// arrays carry a u64 length first; an optional is a u8 presence flag, then the value if present.
// Every field of each struct is written, in declaration order (layouts below); a short or
// malformed message throws std::runtime_error from decode.
#pragma once

#include "engine/engine_client.h"
#include "engine/request.h"
#include "runtime/mp/wire.h"

namespace moeserve::codec {

// GenerationRequest:
//   str request_id | arr<i32> prompt_ids
//   SamplingParams: f32 temperature, f32 top_p, i32 top_k, f32 min_p, f32 presence_penalty,
//                   f32 frequency_penalty, f32 repetition_penalty, opt<u64> seed
//   StopParams:     i32 max_tokens, i32 min_tokens, u64 n × str stop, arr<i32> stop_token_ids,
//                   u8 ignore_eos, u8 include_stop_str_in_output, u8 skip_special_tokens
//   opt<i32> logprobs
void encode(mp::Writer& out, const GenerationRequest& request);
GenerationRequest decode_request(mp::Reader& in);

// RequestOutput:
//   str request_id | arr<i32> new_token_ids | str new_text
//   u64 n × TokenLogprob (i32 token_id, f32 logprob, u64 k × (i32 id, f32 logprob))
//   u8 finished | opt<u8> finish_reason | opt<str> stop_reason_text | opt<i32> stop_reason_token
//   str error | i32 num_prompt_tokens | i32 num_output_tokens | i32 num_cached_tokens
void encode(mp::Writer& out, const RequestOutput& output);
RequestOutput decode_output(mp::Reader& in);

// EngineStats: i32 num_running, i32 num_waiting, f64 kv_cache_usage.
void encode(mp::Writer& out, const EngineStats& stats);
EngineStats decode_stats(mp::Reader& in);

void put_string(mp::Writer& out, const std::string& text);
std::string get_string(mp::Reader& in);

}  // namespace moeserve::codec

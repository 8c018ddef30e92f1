// The codec between API-server processes and the engine (engine/request_codec.h): every field of
// GenerationRequest, RequestOutput and EngineStats survives a round trip with values unlike the
// defaults; every truncation of a message, and a corrupt flag, is refused with an exception
// instead of reading past the end. Likewise the live page's EP counters (apiserver/api_wire.h).
#include "engine/request_codec.h"

#include <gtest/gtest.h>

#include <limits>

#include "apiserver/api_wire.h"

namespace moeserve {
namespace {

GenerationRequest full_request() {
  GenerationRequest request;
  request.request_id = "cmpl-abc\x01\xff-3";
  request.prompt_ids = {1, 0, 31999, 7, -1};
  request.sampling.temperature = 0.25f;
  request.sampling.top_p = 0.875f;
  request.sampling.top_k = 40;
  request.sampling.min_p = 0.0625f;
  request.sampling.presence_penalty = -1.5f;
  request.sampling.frequency_penalty = 0.75f;
  request.sampling.repetition_penalty = 1.125f;
  request.sampling.seed = std::numeric_limits<uint64_t>::max() - 5;
  request.stop.max_tokens = 123;
  request.stop.min_tokens = 4;
  request.stop.stop = {"\n\n", "", "Amen é"};
  request.stop.stop_token_ids = {2, 32000};
  request.stop.ignore_eos = true;
  request.stop.include_stop_str_in_output = true;
  request.stop.skip_special_tokens = false;
  request.logprobs = 5;
  return request;
}

RequestOutput full_output() {
  RequestOutput output;
  output.request_id = "chatcmpl-xyz-1";
  output.new_token_ids = {5, 6, 7};
  output.new_text = std::string("in the beginning\0 é", 20);
  output.new_logprobs = {{5, -0.5f, {{5, -0.5f}, {9, -1.25f}}}, {6, -0.0f, {}}, {7, -3.75f, {{1, -7.0f}}}};
  output.finished = true;
  output.finish_reason = FinishReason::kStop;
  output.stop_reason_text = "Amen";
  output.stop_reason_token = 32000;
  output.error = "no error, just text";
  output.num_prompt_tokens = 17;
  output.num_output_tokens = 3;
  output.num_cached_tokens = 16;
  return output;
}

void expect_same(const GenerationRequest& a, const GenerationRequest& b) {
  EXPECT_EQ(a.request_id, b.request_id);
  EXPECT_EQ(a.prompt_ids, b.prompt_ids);
  EXPECT_EQ(a.sampling.temperature, b.sampling.temperature);
  EXPECT_EQ(a.sampling.top_p, b.sampling.top_p);
  EXPECT_EQ(a.sampling.top_k, b.sampling.top_k);
  EXPECT_EQ(a.sampling.min_p, b.sampling.min_p);
  EXPECT_EQ(a.sampling.presence_penalty, b.sampling.presence_penalty);
  EXPECT_EQ(a.sampling.frequency_penalty, b.sampling.frequency_penalty);
  EXPECT_EQ(a.sampling.repetition_penalty, b.sampling.repetition_penalty);
  EXPECT_EQ(a.sampling.seed, b.sampling.seed);
  EXPECT_EQ(a.stop.max_tokens, b.stop.max_tokens);
  EXPECT_EQ(a.stop.min_tokens, b.stop.min_tokens);
  EXPECT_EQ(a.stop.stop, b.stop.stop);
  EXPECT_EQ(a.stop.stop_token_ids, b.stop.stop_token_ids);
  EXPECT_EQ(a.stop.ignore_eos, b.stop.ignore_eos);
  EXPECT_EQ(a.stop.include_stop_str_in_output, b.stop.include_stop_str_in_output);
  EXPECT_EQ(a.stop.skip_special_tokens, b.stop.skip_special_tokens);
  EXPECT_EQ(a.logprobs, b.logprobs);
}

void expect_same(const RequestOutput& a, const RequestOutput& b) {
  EXPECT_EQ(a.request_id, b.request_id);
  EXPECT_EQ(a.new_token_ids, b.new_token_ids);
  EXPECT_EQ(a.new_text, b.new_text);
  ASSERT_EQ(a.new_logprobs.size(), b.new_logprobs.size());
  for (size_t i = 0; i < a.new_logprobs.size(); ++i) {
    EXPECT_EQ(a.new_logprobs[i].token_id, b.new_logprobs[i].token_id);
    EXPECT_EQ(a.new_logprobs[i].logprob, b.new_logprobs[i].logprob);
    EXPECT_EQ(a.new_logprobs[i].top, b.new_logprobs[i].top);
  }
  EXPECT_EQ(a.finished, b.finished);
  EXPECT_EQ(a.finish_reason, b.finish_reason);
  EXPECT_EQ(a.stop_reason_text, b.stop_reason_text);
  EXPECT_EQ(a.stop_reason_token, b.stop_reason_token);
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(a.num_prompt_tokens, b.num_prompt_tokens);
  EXPECT_EQ(a.num_output_tokens, b.num_output_tokens);
  EXPECT_EQ(a.num_cached_tokens, b.num_cached_tokens);
}

template <typename T>
std::vector<char> bytes_of(const T& value) {
  mp::Writer out('x');
  codec::encode(out, value);
  return std::vector<char>(out.bytes().begin() + 1, out.bytes().end());  // without the tag
}

TEST(RequestCodec, RequestRoundTripKeepsEveryField) {
  const GenerationRequest original = full_request();
  const std::vector<char> bytes = bytes_of(original);
  mp::Reader in(bytes.data(), bytes.size());
  expect_same(codec::decode_request(in), original);
  EXPECT_EQ(in.left(), 0u);
  // The defaults too (no seed, no logprobs, empty lists).
  const GenerationRequest plain;
  const std::vector<char> plain_bytes = bytes_of(plain);
  mp::Reader plain_in(plain_bytes.data(), plain_bytes.size());
  const GenerationRequest back = codec::decode_request(plain_in);
  expect_same(back, plain);
  EXPECT_FALSE(back.sampling.seed.has_value());
  EXPECT_FALSE(back.logprobs.has_value());
}

TEST(RequestCodec, OutputRoundTripKeepsEveryField) {
  const RequestOutput original = full_output();
  const std::vector<char> bytes = bytes_of(original);
  mp::Reader in(bytes.data(), bytes.size());
  expect_same(codec::decode_output(in), original);
  EXPECT_EQ(in.left(), 0u);
  for (FinishReason reason : {FinishReason::kStop, FinishReason::kLength, FinishReason::kAbort, FinishReason::kError}) {
    RequestOutput output;
    output.finish_reason = reason;
    const std::vector<char> reason_bytes = bytes_of(output);
    mp::Reader reason_in(reason_bytes.data(), reason_bytes.size());
    const RequestOutput back = codec::decode_output(reason_in);
    expect_same(back, output);
    EXPECT_FALSE(back.stop_reason_text.has_value());
    EXPECT_FALSE(back.stop_reason_token.has_value());
  }
}

TEST(RequestCodec, StatsRoundTrip) {
  const EngineStats stats{7, 3, 0.8125};
  const std::vector<char> bytes = bytes_of(stats);
  mp::Reader in(bytes.data(), bytes.size());
  const EngineStats back = codec::decode_stats(in);
  EXPECT_EQ(back.num_running, 7);
  EXPECT_EQ(back.num_waiting, 3);
  EXPECT_EQ(back.kv_cache_usage, 0.8125);
}

TEST(RequestCodec, EpStatsRoundTripAndTruncationsThrow) {
  EpStats ep;
  ep.rank_tokens_total = {1234, 987};
  ep.balancedness = 0.8875;
  ep.rearrangements = 3;
  ep.recent_rearrangements.push_back(EplbRearrangement{
      .index = 3,
      .step = 4096,
      .balancedness_before = 0.61,
      .balancedness_after = 0.93,
      .layers = {EplbLayerMove{.layer = 1, .slots_changed = 2, .arrivals = {{.expert = 5, .rank = 1}, {6, 0}}},
                 EplbLayerMove{.layer = 7, .slots_changed = 1, .arrivals = {{.expert = 0, .rank = 1}}}}});
  mp::Writer out('T');
  apiserver::encode_ep(out, ep);
  const std::vector<char>& bytes = out.bytes();
  mp::Reader in(bytes.data() + 1, bytes.size() - 1);
  const EpStats back = apiserver::decode_ep(in);
  EXPECT_EQ(in.left(), 0u);
  EXPECT_EQ(back.rank_tokens_total, ep.rank_tokens_total);
  EXPECT_EQ(back.balancedness, ep.balancedness);
  EXPECT_EQ(back.rearrangements, 3);
  ASSERT_EQ(back.recent_rearrangements.size(), 1u);
  const EplbRearrangement& record = back.recent_rearrangements[0];
  EXPECT_EQ(record.index, 3);
  EXPECT_EQ(record.step, 4096);
  EXPECT_EQ(record.balancedness_before, 0.61);
  EXPECT_EQ(record.balancedness_after, 0.93);
  ASSERT_EQ(record.layers.size(), 2u);
  EXPECT_EQ(record.layers[0].layer, 1);
  EXPECT_EQ(record.layers[0].slots_changed, 2);
  ASSERT_EQ(record.layers[0].arrivals.size(), 2u);
  EXPECT_EQ(record.layers[0].arrivals[1].expert, 6);
  EXPECT_EQ(record.layers[0].arrivals[1].rank, 0);
  EXPECT_EQ(record.layers[1].arrivals[0].rank, 1);
  for (size_t size = 0; size + 1 < bytes.size(); ++size) {
    mp::Reader cut(bytes.data() + 1, size);
    EXPECT_THROW(apiserver::decode_ep(cut), std::runtime_error) << size;
  }
}

TEST(RequestCodec, TruncatedOrCorruptMessagesThrow) {
  const std::vector<char> request = bytes_of(full_request());
  for (size_t size = 0; size < request.size(); ++size) {
    mp::Reader in(request.data(), size);
    EXPECT_THROW(codec::decode_request(in), std::runtime_error) << size;
  }
  const std::vector<char> output = bytes_of(full_output());
  for (size_t size = 0; size < output.size(); ++size) {
    mp::Reader in(output.data(), size);
    EXPECT_THROW(codec::decode_output(in), std::runtime_error) << size;
  }
  // A finish reason past kError and a boolean other than 0/1 are refused.
  RequestOutput bad = full_output();
  bad.finish_reason = static_cast<FinishReason>(9);
  const std::vector<char> bad_reason = bytes_of(bad);
  mp::Reader reason_in(bad_reason.data(), bad_reason.size());
  EXPECT_THROW(codec::decode_output(reason_in), std::runtime_error);
  std::vector<char> bad_flag = bytes_of(GenerationRequest{});
  bad_flag[bad_flag.size() - 2] = 7;  // skip_special_tokens (then the logprobs flag, absent)
  mp::Reader flag_in(bad_flag.data(), bad_flag.size());
  EXPECT_THROW(codec::decode_request(flag_in), std::runtime_error);
  // A huge count is refused before anything is allocated for it.
  mp::Writer huge('x');
  huge.put<uint64_t>(uint64_t{1} << 60);
  mp::Reader huge_in(huge.bytes().data() + 1, huge.bytes().size() - 1);
  EXPECT_THROW(codec::decode_request(huge_in), std::runtime_error);
}

}  // namespace
}  // namespace moeserve

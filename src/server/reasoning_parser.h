// vLLM's --reasoning-parser: a chat answer's thinking (between <think> and </think>) goes to the
// message's `reasoning` field (and its older name `reasoning_content`), the rest to `content`.
//   deepseek_r1: the answer starts inside the thinking (R1's template opens <think> in the prompt):
//                everything up to </think> is reasoning, all of it when </think> never comes.
//   qwen3:       reasoning when the answer opens with <think> or the prompt ends with it (the
//                template opened it); otherwise the whole answer is content.
//   deepseek_v3: DeepSeek-V3.1's thinking mode, on when chat_template_kwargs.thinking is true (as
//                deepseek_r1 then); otherwise no reasoning.
//   openai_gptoss: GPT-OSS's harmony channels (server/harmony_parser.h), which a gpt-oss model's
//                chat answers always get, as in vLLM; this splitter is not used for it.
// A stream and a whole answer are split by the same state machine, so both give the same fields.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace moeserve {

enum class ReasoningParser { kNone, kDeepseekR1, kQwen3, kDeepseekV3, kOpenAiGptOss };

// The parser of a --reasoning-parser name; unknown names list the supported ones.
Result<ReasoningParser> parse_reasoning_parser(const std::string& name);

// One answer's split, fed its text as it is generated.
class ReasoningSplitter {
 public:
  // thinking: chat_template_kwargs.thinking (deepseek_v3); prompt: the rendered chat.
  ReasoningSplitter(ReasoningParser parser, bool thinking, std::string_view prompt);

  struct Delta {
    std::string reasoning;
    std::string content;
  };
  // The next piece of the answer → what can be told of it now (a possible start of a marker is
  // held back until the next piece settles it); `last`: the answer ends with it, nothing is held.
  Delta push(std::string_view text, bool last = false);

 private:
  Delta split(std::string_view text);
  Delta finish();  // whatever was held back

  enum class State { kStart, kReasoning, kContent };
  State state_;
  bool content_without_marker_;  // kStart: no leading <think> → content (else reasoning)
  std::string held_;
};

}  // namespace moeserve

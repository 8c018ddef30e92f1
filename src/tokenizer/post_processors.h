// tokenizer.json post-processors: the special tokens wrapped around one encoded sequence when
// special tokens are requested (TemplateProcessing, BertProcessing, RobertaProcessing;
// ByteLevel only adjusts offsets, so it adds nothing here; Sequence chains them).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve::tok {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Wraps the ids of a single sequence with the processor's special tokens.
  virtual void process(std::vector<int32_t>& ids) const = 0;
};

// `spec` is tokenizer.json's "post_processor" value; null gives nullptr.
Result<std::unique_ptr<PostProcessor>> parse_post_processor(const nlohmann::json& spec);

// A processor that emits `prefix` A `suffix` (what transformers builds from add_bos_token /
// add_eos_token for Llama-style tokenizers).
std::unique_ptr<PostProcessor> make_affix_processor(std::vector<int32_t> prefix, std::vector<int32_t> suffix);

}  // namespace moeserve::tok

// Post-processor implementations and their tokenizer.json parsing (see post_processors.h).
#include "tokenizer/post_processors.h"

#include "tokenizer/json_fields.h"

namespace moeserve::tok {

namespace {

// Emits prefix + ids + suffix. Invariant: both affixes are fixed at construction.
class AffixProcessor final : public PostProcessor {
 public:
  AffixProcessor(std::vector<int32_t> prefix, std::vector<int32_t> suffix) : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void process(std::vector<int32_t>& ids) const override {
    ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
    ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  }

 private:
  std::vector<int32_t> prefix_, suffix_;
};

class NoOpProcessor final : public PostProcessor {
 public:
  void process(std::vector<int32_t>&) const override {}
};

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  void process(std::vector<int32_t>& ids) const override {
    for (const auto& step : steps_) step->process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

Result<std::vector<int32_t>> special_token_ids(const nlohmann::json& spec, const std::string& name) {
  auto table = spec.find("special_tokens");
  if (table == spec.end() || !table->is_object()) return make_error("TemplateProcessing has no \"special_tokens\" object");
  auto entry = table->find(name);
  if (entry == table->end()) return make_error("TemplateProcessing uses special token '{}' it does not define", name);
  auto ids = entry->find("ids");
  if (ids == entry->end() || !ids->is_array()) return make_error("special token '{}' has no \"ids\" array", name);
  std::vector<int32_t> result;
  for (const auto& id : *ids) {
    if (!id.is_number_integer()) return make_error("special token '{}' has a non-integer id", name);
    result.push_back(id.get<int32_t>());
  }
  return result;
}

Result<std::unique_ptr<PostProcessor>> parse_template(const nlohmann::json& spec) {
  MS_ASSIGN_OR_RETURN(const nlohmann::json* single, json_array(spec, "single"));
  std::vector<int32_t> prefix, suffix;
  bool seen_sequence = false;
  for (const auto& piece : *single) {
    if (auto special = piece.find("SpecialToken"); piece.is_object() && special != piece.end()) {
      MS_ASSIGN_OR_RETURN(std::string name, json_string(*special, "id"));
      MS_ASSIGN_OR_RETURN(auto ids, special_token_ids(spec, name));
      auto& target = seen_sequence ? suffix : prefix;
      target.insert(target.end(), ids.begin(), ids.end());
    } else if (piece.is_object() && piece.contains("Sequence")) {
      if (seen_sequence) return make_error("TemplateProcessing single template has two sequences");
      seen_sequence = true;
    } else {
      return make_error("TemplateProcessing piece must be SpecialToken or Sequence: {}", piece.dump());
    }
  }
  if (!seen_sequence) return make_error("TemplateProcessing single template has no $A sequence");
  return make_affix_processor(std::move(prefix), std::move(suffix));
}

// BertProcessing / RobertaProcessing: "cls": [token, id] A "sep": [token, id].
Result<std::unique_ptr<PostProcessor>> parse_cls_sep(const nlohmann::json& spec) {
  const auto id_of = [&](const char* key) -> Result<int32_t> {
    auto it = spec.find(key);
    if (it == spec.end() || !it->is_array() || it->size() != 2 || !(*it)[1].is_number_integer())
      return make_error("post_processor field \"{}\" must be [token, id]", key);
    return (*it)[1].get<int32_t>();
  };
  MS_ASSIGN_OR_RETURN(int32_t cls, id_of("cls"));
  MS_ASSIGN_OR_RETURN(int32_t sep, id_of("sep"));
  return make_affix_processor({cls}, {sep});
}

}  // namespace

std::unique_ptr<PostProcessor> make_affix_processor(std::vector<int32_t> prefix, std::vector<int32_t> suffix) {
  return std::make_unique<AffixProcessor>(std::move(prefix), std::move(suffix));
}

Result<std::unique_ptr<PostProcessor>> parse_post_processor(const nlohmann::json& spec) {
  using Ptr = std::unique_ptr<PostProcessor>;
  if (spec.is_null()) return Ptr();
  MS_ASSIGN_OR_RETURN(std::string type, json_type(spec, "post_processor"));
  if (type == "TemplateProcessing") return parse_template(spec);
  if (type == "ByteLevel") return Ptr(new NoOpProcessor());
  if (type == "BertProcessing" || type == "RobertaProcessing") return parse_cls_sep(spec);
  if (type == "Sequence") {
    MS_ASSIGN_OR_RETURN(const nlohmann::json* items, json_array(spec, "processors"));
    std::vector<Ptr> steps;
    for (const auto& item : *items) {
      MS_ASSIGN_OR_RETURN(auto step, parse_post_processor(item));
      if (step) steps.push_back(std::move(step));
    }
    return Ptr(new SequenceProcessor(std::move(steps)));
  }
  return make_error("unsupported post_processor type '{}' (supported: TemplateProcessing, ByteLevel, "
                    "BertProcessing, RobertaProcessing, Sequence)", type);
}

}  // namespace moeserve::tok

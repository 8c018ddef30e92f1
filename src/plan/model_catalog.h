// Built-in model catalog: the published config.json of well-known MoE checkpoints, so that
// `moeserve plan deepseek-ai/DeepSeek-V3 ...` works without downloading anything. Each entry
// keeps the fields of the published file that the planner and the config parser read, and
// names where the values were taken from.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve::plan {

struct CatalogModel {
  std::string id;      // Hugging Face model id, e.g. "deepseek-ai/DeepSeek-V3"
  std::string source;  // where the config values come from
  // Published headline figures (model card / README), for comparison in tests and docs.
  double published_total_params = 0;
  double published_active_params = 0;
  std::string published_note;
  nlohmann::json config;  // the config.json contents
};

const std::vector<CatalogModel>& model_catalog();
// Case-insensitive lookup by id; an unknown id lists the catalog.
Result<const CatalogModel*> find_catalog_model(const std::string& id);

}  // namespace moeserve::plan

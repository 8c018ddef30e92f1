// A `moeserve plan` catalog model's config at the shape the benchmarks run it: its
// quantization_config dropped (bf16 weights) and, with layers > 0, cut to that many layers.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "plan/model_catalog.h"

namespace moeserve::testing {

inline ModelConfig catalog_shape(const std::string& id, int layers = 0) {
  auto model = plan::find_catalog_model(id);
  EXPECT_TRUE(model.ok()) << id;
  nlohmann::json overrides = {{"quantization_config", nullptr}};
  if (layers > 0) overrides["num_hidden_layers"] = layers;
  auto config = parse_model_config((*model)->config, overrides);
  EXPECT_TRUE(config.ok()) << (config.ok() ? "" : config.error().message);
  return *config;
}

}  // namespace moeserve::testing

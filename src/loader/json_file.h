// Reads a JSON file (config.json, generation_config.json, index files) with a clear error
// naming the file on any failure.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve {

Result<nlohmann::json> read_json_file(const std::string& path);

}  // namespace moeserve

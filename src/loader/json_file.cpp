#include "loader/json_file.h"

#include <fstream>
#include <sstream>

namespace moeserve {

Result<nlohmann::json> read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("{}: cannot open", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return make_error("{}: not valid JSON", path);
  return value;
}

}  // namespace moeserve

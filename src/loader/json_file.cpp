#include "loader/json_file.h"

#include "base/text_file.h"

namespace moeserve {

Result<nlohmann::json> read_json_file(const std::string& path) {
  MS_ASSIGN_OR_RETURN(const std::string text, read_text_file(path));
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return make_error("{}: not valid JSON", path);
  return value;
}

}  // namespace moeserve

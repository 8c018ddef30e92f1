#include "loader/hub_cache.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "base/text_file.h"

namespace moeserve {

namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

fs::path cache_root(const HubLookup& lookup) {
  if (!lookup.download_dir.empty()) return lookup.download_dir;
  if (const std::string hub = env("HF_HUB_CACHE"); !hub.empty()) return hub;
  if (const std::string home = env("HF_HOME"); !home.empty()) return fs::path(home) / "hub";
  if (const std::string xdg = env("XDG_CACHE_HOME"); !xdg.empty()) return fs::path(xdg) / "huggingface" / "hub";
  return fs::path(env("HOME")) / ".cache" / "huggingface" / "hub";
}

bool is_commit_hash(const std::string& revision) {
  if (revision.size() != 40) return false;
  for (char c : revision) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

bool looks_like_hub_id(const std::string& model) {
  std::error_code ec;
  if (model.empty() || fs::exists(model, ec)) return false;
  const size_t slash = model.find('/');
  return slash != std::string::npos && slash > 0 && slash + 1 < model.size() &&
         model.find('/', slash + 1) == std::string::npos && model[0] != '.' && model.find("..") == std::string::npos;
}

Result<std::string> resolve_model_path(const std::string& model, const HubLookup& lookup) {
  if (!looks_like_hub_id(model)) return model;
  const std::string org = model.substr(0, model.find('/'));
  const std::string name = model.substr(model.find('/') + 1);
  const fs::path root = cache_root(lookup);
  const fs::path repo = root / ("models--" + org + "--" + name);
  std::string commit = lookup.revision;
  if (!is_commit_hash(commit)) {
    const fs::path ref = repo / "refs" / lookup.revision;
    auto text = read_text_file(ref.string());
    if (!text.ok()) {
      return make_error(
          "'{}' is neither a local path nor in the Hugging Face cache at {} (no {}); downloading from the hub is not "
          "implemented yet: download it (e.g. `huggingface-cli download {}`) or pass its directory",
          model, root.string(), ref.string(), model);
    }
    commit = *text;
    while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
  }
  const fs::path snapshot = repo / "snapshots" / commit;
  std::error_code ec;
  if (!fs::exists(snapshot / "config.json", ec)) {
    return make_error("'{}' revision {} is in the Hugging Face cache at {} but its snapshot {} has no config.json",
                      model, lookup.revision, root.string(), snapshot.string());
  }
  return snapshot.string();
}

}  // namespace moeserve

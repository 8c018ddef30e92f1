#include "loader/hub_cache.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "base/text_file.h"
#include "loader/hub_download.h"

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

// HF_HUB_OFFLINE as huggingface_hub reads it: 1/ON/YES/TRUE (any case) means the cache only.
bool hub_offline() {
  std::string value = env("HF_HUB_OFFLINE");
  for (char& c : value) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return value == "1" || value == "ON" || value == "YES" || value == "TRUE";
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
  // The revision's commit as the cache knows it: the revision itself, or refs/<revision>.
  const fs::path ref = repo / "refs" / lookup.revision;
  std::string commit;
  if (is_commit_hash(lookup.revision)) {
    commit = lookup.revision;
  } else if (auto text = read_text_file(ref.string()); text.ok()) {
    commit = *text;
    while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
  }
  std::error_code ec;
  if (!commit.empty() && fs::exists(repo / "snapshots" / commit / "config.json", ec)) {
    return (repo / "snapshots" / commit).string();
  }
  // Not (completely) in the cache: from the hub, unless HF_HUB_OFFLINE says the cache only.
  if (hub_offline()) {
    if (!commit.empty()) {
      return make_error("'{}' revision {} is in the Hugging Face cache at {} but its snapshot {} has no config.json "
                        "(HF_HUB_OFFLINE is set, so it is not downloaded again)",
                        model, lookup.revision, root.string(), (repo / "snapshots" / commit).string());
    }
    return make_error("'{}' is neither a local path nor in the Hugging Face cache at {} (no {}), and HF_HUB_OFFLINE is "
                      "set: download it (e.g. `huggingface-cli download {}`) or pass its directory",
                      model, root.string(), ref.string(), model);
  }
  auto downloaded = download_snapshot(model, lookup.revision, repo);
  if (!downloaded.ok()) {
    return make_error("'{}' is neither a local path nor in the Hugging Face cache at {}, and downloading it failed: {}",
                      model, root.string(), downloaded.error().message);
  }
  return downloaded->string();
}

}  // namespace moeserve

#include "loader/hub_download.h"

#include <curl/curl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <vector>

namespace moeserve {

namespace fs = std::filesystem;

namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::string endpoint() {
  std::string url = env_or("HF_ENDPOINT", "https://huggingface.co");
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

struct CurlHandle {
  CURL* curl = nullptr;
  curl_slist* headers = nullptr;
  ~CurlHandle() {
    curl_slist_free_all(headers);
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

// Progress goes to stderr, so a command's stdout (generate --json) stays its answer alone.
spdlog::logger& hub_log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto existing = spdlog::get("hub");
    return existing ? existing : spdlog::stderr_color_mt("hub");
  }();
  return *logger;
}

size_t write_to_string(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

size_t write_to_file(char* data, size_t size, size_t count, void* out) {
  return std::fwrite(data, size, count, static_cast<std::FILE*>(out)) * size;
}

// GET url into `sink` (a string or a FILE*); an HTTP status other than 200 is an error that names
// it and, for 401/403/404, what it usually means on the hub.
Status http_get(const std::string& url, bool to_file, void* sink) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CurlHandle handle;
  handle.curl = curl_easy_init();
  if (handle.curl == nullptr) return make_error("cannot initialise libcurl");
  CURL* curl = handle.curl;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
  // A stalled transfer (under 1 KB/s for 60 s) is abandoned rather than hanging start-up.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "moeserve");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (const char* token = std::getenv("HF_TOKEN"); token != nullptr && *token != '\0') {
    handle.headers = curl_slist_append(handle.headers, (std::string("Authorization: Bearer ") + token).c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, handle.headers);
    // The token goes to the hub only, not to the CDN a file redirects to.
    curl_easy_setopt(curl, CURLOPT_UNRESTRICTED_AUTH, 0L);
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, to_file ? write_to_file : write_to_string);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, sink);
  const CURLcode code = curl_easy_perform(curl);
  if (code != CURLE_OK) return make_error("GET {} failed: {}", url, curl_easy_strerror(code));
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (status == 200) return ok_status();
  const char* meaning = status == 401 || status == 403 ? " (a gated or private model: set HF_TOKEN to a token that may read it)"
                        : status == 404                ? " (no such model, revision or file on the hub)"
                                                       : "";
  return make_error("GET {} answered HTTP {}{}", url, status, meaning);
}

}  // namespace

bool is_served_model_file(const std::string& path) {
  if (path.find('/') != std::string::npos) return false;  // subfolders (original/, onnx/, ...)
  auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
  };
  return ends_with(".safetensors") || path == "model.safetensors.index.json" || path == "config.json" ||
         path == "generation_config.json" || path == "tokenizer.json" || path == "tokenizer_config.json" ||
         path == "special_tokens_map.json" || path == "chat_template.jinja" || path == "chat_template.json";
}

Result<fs::path> download_snapshot(const std::string& id, const std::string& revision, const fs::path& repo_dir) {
  const std::string base = endpoint();
  const std::string info_url = fmt::format("{}/api/models/{}/revision/{}", base, id, revision);
  std::string body;
  MS_RETURN_IF_ERROR(http_get(info_url, /*to_file=*/false, &body));
  const nlohmann::json info = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!info.is_object() || !info.contains("sha") || !info["sha"].is_string() || !info.contains("siblings") ||
      !info["siblings"].is_array()) {
    return make_error("GET {}: not a hub model description (no sha / siblings)", info_url);
  }
  const std::string commit = info["sha"].get<std::string>();
  if (commit.size() != 40 || commit.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return make_error("GET {}: '{}' is not a commit hash", info_url, commit);
  }
  std::vector<std::string> files;
  for (const auto& sibling : info["siblings"]) {
    if (!sibling.is_object() || !sibling.contains("rfilename") || !sibling["rfilename"].is_string()) continue;
    const std::string name = sibling["rfilename"].get<std::string>();
    if (is_served_model_file(name) && name.find("..") == std::string::npos) files.push_back(name);
  }
  if (std::find(files.begin(), files.end(), "config.json") == files.end()) {
    return make_error("{} revision {} has no config.json on {}: not a transformers model", id, revision, base);
  }
  const fs::path snapshot = repo_dir / "snapshots" / commit;
  std::error_code ec;
  fs::create_directories(snapshot, ec);
  if (ec) return make_error("cannot create {}: {}", snapshot.string(), ec.message());
  for (const std::string& name : files) {
    const fs::path target = snapshot / name;
    if (fs::exists(target, ec)) continue;  // a complete file from an earlier download
    const fs::path partial = snapshot / (name + ".incomplete");
    const std::string url = fmt::format("{}/{}/resolve/{}/{}", base, id, commit, name);
    hub_log().info("downloading {}", url);
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(std::fopen(partial.c_str(), "wb"), std::fclose);
    if (!out) return make_error("cannot write {}", partial.string());
    Status got = http_get(url, /*to_file=*/true, out.get());
    const bool flushed = std::fflush(out.get()) == 0;
    out.reset();
    if (got.ok() && !flushed) got = make_error("writing {} failed (disk full?)", partial.string());
    if (!got.ok()) {
      fs::remove(partial, ec);
      return got.error();
    }
    fs::rename(partial, target, ec);
    if (ec) return make_error("cannot rename {} to {}: {}", partial.string(), target.string(), ec.message());
  }
  if (revision != commit) {
    fs::create_directories(repo_dir / "refs", ec);
    std::ofstream(repo_dir / "refs" / revision) << commit;  // no newline, as huggingface_hub writes it
  }
  return snapshot;
}

}  // namespace moeserve

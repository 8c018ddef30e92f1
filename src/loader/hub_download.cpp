#include "loader/hub_download.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string_view>
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

// One file transfer's state: where the bytes go, where an interrupted download resumes, and
// the progress line (on a terminal only: a non-TTY log gets the "downloading" lines alone).
struct FileTransfer {
  std::FILE* file = nullptr;
  int64_t resume_from = 0;  // bytes already in the file: sent as Range: bytes=N-
  long final_status = 0;    // the last status line seen (after redirects)
  std::string name;
  bool progress = false;
  std::chrono::steady_clock::time_point last_progress{};
};

// Headers of a file transfer: a 200 to a ranged request means the server sends the whole file
// again, so what was kept is dropped before the body arrives.
size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<FileTransfer*>(user);
  const std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    const size_t space = line.find(' ');
    if (space != std::string_view::npos) transfer->final_status = std::strtol(line.data() + space + 1, nullptr, 10);
  } else if (line == "\r\n" && transfer->final_status == 200 && transfer->resume_from > 0) {
    std::fflush(transfer->file);
    if (::ftruncate(::fileno(transfer->file), 0) != 0) return 0;  // aborts the transfer
    transfer->resume_from = 0;
  }
  return size * count;
}

int on_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* transfer = static_cast<FileTransfer*>(user);
  const auto clock = std::chrono::steady_clock::now();
  if (!transfer->progress || total <= 0 || clock - transfer->last_progress < std::chrono::milliseconds(250)) return 0;
  transfer->last_progress = clock;
  const double mib = 1024.0 * 1024.0;
  std::fprintf(stderr, "\r  %s  %.1f / %.1f MiB  %3.0f%%", transfer->name.c_str(), (transfer->resume_from + now) / mib,
               (transfer->resume_from + total) / mib, 100.0 * (transfer->resume_from + now) / (transfer->resume_from + total));
  return 0;
}

// GET url into `body` (a string) or into `transfer`'s file; an HTTP status other than 200 (206
// for a resumed file) is an error that names it and, for 401/403/404, what it usually means.
Status http_get(const std::string& url, std::string* body, FileTransfer* transfer = nullptr) {
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
  if (transfer != nullptr) {
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_to_file);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, transfer->file);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, transfer);
    if (transfer->resume_from > 0) curl_easy_setopt(curl, CURLOPT_RESUME_FROM_LARGE, curl_off_t{transfer->resume_from});
    if (transfer->progress) {
      curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
      curl_easy_setopt(curl, CURLOPT_XFERINFODATA, transfer);
      curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    }
  } else {
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_to_string);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
  }
  const CURLcode code = curl_easy_perform(curl);
  if (transfer != nullptr && transfer->progress) std::fprintf(stderr, "\n");
  if (code != CURLE_OK) return make_error("GET {} failed: {}", url, curl_easy_strerror(code));
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (status == 200 || (status == 206 && transfer != nullptr && transfer->resume_from > 0)) return ok_status();
  const char* meaning = status == 401 || status == 403 ? " (a gated or private model: set HF_TOKEN to a token that may read it)"
                        : status == 404                ? " (no such model, revision or file on the hub)"
                                                       : "";
  return make_error("GET {} answered HTTP {}{}", url, status, meaning);
}

// The SHA-256 of a file, lowercase hex (the hub's lfs.sha256).
Result<std::string> file_sha256(const fs::path& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> in(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!in) return make_error("cannot read {}", path.string());
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return make_error("cannot start SHA-256");
  std::vector<unsigned char> buffer(1 << 20);
  size_t got = 0;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), in.get())) > 0) EVP_DigestUpdate(ctx.get(), buffer.data(), got);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

// What the hub says a file is: its size and, for LFS files (weights), its SHA-256.
struct ExpectedFile {
  std::string name;
  int64_t size = -1;   // -1: not reported
  std::string sha256;  // empty: not reported (small git files)
};

// Downloads `expected` into `target` through `target`.incomplete, resuming what an earlier
// attempt left there, and checks the size and hash the hub reported before renaming it.
Status download_file(const std::string& url, const ExpectedFile& expected, const fs::path& target) {
  const fs::path partial = target.string() + ".incomplete";
  std::error_code ec;
  FileTransfer transfer;
  transfer.name = expected.name;
  transfer.progress = ::isatty(STDERR_FILENO) != 0;
  transfer.resume_from = fs::exists(partial, ec) ? static_cast<int64_t>(fs::file_size(partial, ec)) : 0;
  if (ec || (expected.size >= 0 && transfer.resume_from > expected.size)) transfer.resume_from = 0;
  hub_log().info("downloading {}{}", url, transfer.resume_from > 0 ? fmt::format(" (resuming at byte {})", transfer.resume_from) : "");
  {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(std::fopen(partial.c_str(), transfer.resume_from > 0 ? "ab" : "wb"),
                                                        std::fclose);
    if (!out) return make_error("cannot write {}", partial.string());
    transfer.file = out.get();
    Status got = http_get(url, nullptr, &transfer);
    if (std::fflush(out.get()) != 0 && got.ok()) got = make_error("writing {} failed (disk full?)", partial.string());
    if (!got.ok()) return got;  // the partial file stays, for the next attempt to resume
  }
  const int64_t size = static_cast<int64_t>(fs::file_size(partial, ec));
  Status check = ok_status();
  if (expected.size >= 0 && size != expected.size) {
    check = make_error("{}: downloaded {} bytes, the hub reports {}", url, size, expected.size);
  } else if (!expected.sha256.empty()) {
    MS_ASSIGN_OR_RETURN(std::string sha, file_sha256(partial));
    if (sha != expected.sha256) check = make_error("{}: sha256 {} differs from the hub's {}", url, sha, expected.sha256);
  }
  if (!check.ok()) {
    fs::remove(partial, ec);  // corrupt: the next attempt starts over
    return check;
  }
  fs::rename(partial, target, ec);
  if (ec) return make_error("cannot rename {} to {}: {}", partial.string(), target.string(), ec.message());
  return ok_status();
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
  // blobs=true: each sibling's size, and lfs.sha256 for LFS files.
  const std::string info_url = fmt::format("{}/api/models/{}/revision/{}?blobs=true", base, id, revision);
  std::string body;
  MS_RETURN_IF_ERROR(http_get(info_url, &body));
  const nlohmann::json info = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!info.is_object() || !info.contains("sha") || !info["sha"].is_string() || !info.contains("siblings") ||
      !info["siblings"].is_array()) {
    return make_error("GET {}: not a hub model description (no sha / siblings)", info_url);
  }
  const std::string commit = info["sha"].get<std::string>();
  if (commit.size() != 40 || commit.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return make_error("GET {}: '{}' is not a commit hash", info_url, commit);
  }
  std::vector<ExpectedFile> files;
  for (const auto& sibling : info["siblings"]) {
    if (!sibling.is_object() || !sibling.contains("rfilename") || !sibling["rfilename"].is_string()) continue;
    ExpectedFile file{.name = sibling["rfilename"].get<std::string>()};
    if (!is_served_model_file(file.name) || file.name.find("..") != std::string::npos) continue;
    if (sibling.contains("size") && sibling["size"].is_number_integer()) file.size = sibling["size"].get<int64_t>();
    if (sibling.contains("lfs") && sibling["lfs"].is_object()) {
      const auto& lfs = sibling["lfs"];
      if (lfs.contains("size") && lfs["size"].is_number_integer()) file.size = lfs["size"].get<int64_t>();
      if (lfs.contains("sha256") && lfs["sha256"].is_string()) file.sha256 = lfs["sha256"].get<std::string>();
    }
    files.push_back(std::move(file));
  }
  if (std::none_of(files.begin(), files.end(), [](const ExpectedFile& f) { return f.name == "config.json"; })) {
    return make_error("{} revision {} has no config.json on {}: not a transformers model", id, revision, base);
  }
  const fs::path snapshot = repo_dir / "snapshots" / commit;
  std::error_code ec;
  fs::create_directories(snapshot, ec);
  if (ec) return make_error("cannot create {}: {}", snapshot.string(), ec.message());
  for (const ExpectedFile& file : files) {
    const fs::path target = snapshot / file.name;
    if (fs::exists(target, ec)) continue;  // checked and renamed by an earlier download
    MS_RETURN_IF_ERROR(download_file(fmt::format("{}/{}/resolve/{}/{}", base, id, commit, file.name), file, target));
  }
  if (revision != commit) {
    fs::create_directories(repo_dir / "refs", ec);
    std::ofstream(repo_dir / "refs" / revision) << commit;  // no newline, as huggingface_hub writes it
  }
  return snapshot;
}

}  // namespace moeserve

// Opening and reading files a model directory holds: config.json, tokenizer.json, chat
// templates, safetensors shards. Anything that is not a regular file (a FIFO, a device, a
// directory) is refused by name instead of blocking or reading forever; every failure names the
// file.
#pragma once

#include <cstddef>
#include <string>

#include "base/result.h"

namespace moeserve {

// A regular file open for reading; the descriptor closes with it.
class RegularFile {
 public:
  RegularFile(RegularFile&& other) noexcept;
  RegularFile& operator=(RegularFile&&) = delete;
  ~RegularFile();
  int fd() const { return fd_; }
  size_t size() const { return size_; }

 private:
  friend Result<RegularFile> open_regular_file(const std::string& path, const char* what);
  RegularFile(int fd, size_t size) : fd_(fd), size_(size) {}
  int fd_ = -1;
  size_t size_ = 0;
};

// `what` names the file in the refusal of a non-regular one ("a safetensors shard"), or null.
Result<RegularFile> open_regular_file(const std::string& path, const char* what = nullptr);

Result<std::string> read_text_file(const std::string& path);

}  // namespace moeserve

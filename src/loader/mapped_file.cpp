#include "loader/mapped_file.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "base/text_file.h"

namespace moeserve {

Result<MappedFile> MappedFile::open(const std::string& path) {
  MS_ASSIGN_OR_RETURN(const RegularFile opened, open_regular_file(path, "a safetensors shard"));
  MappedFile file;
  file.path_ = path;
  file.size_ = opened.size();
  if (file.size_ > 0) {
    void* memory = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, opened.fd(), 0);
    if (memory == MAP_FAILED) return make_error("{}: mmap failed: {}", path, std::strerror(errno));
    file.data_ = static_cast<std::byte*>(memory);
  }
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

}  // namespace moeserve

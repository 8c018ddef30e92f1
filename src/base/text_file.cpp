#include "base/text_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace moeserve {

RegularFile::RegularFile(RegularFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(std::exchange(other.size_, 0)) {}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

Result<RegularFile> open_regular_file(const std::string& path, const char* what) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; the
  // S_ISREG check below then refuses it (and devices, directories) by name. Reads and mmap of
  // a regular file ignore the flag.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return make_error("{}: cannot open: {}", path, std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    if (what != nullptr) return make_error("{}: not a regular file ({} must be a file, not a pipe or device)", path, what);
    return make_error("{}: not a regular file", path);
  }
  return RegularFile(fd, static_cast<size_t>(info.st_size));
}

Result<std::string> read_text_file(const std::string& path) {
  MS_ASSIGN_OR_RETURN(RegularFile file, open_regular_file(path));
  std::string text(file.size(), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t got = ::read(file.fd(), text.data() + done, text.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return make_error("{}: read failed: {}", path, std::strerror(errno));
    if (got == 0) break;  // shorter than fstat said: what is there
    done += static_cast<size_t>(got);
  }
  text.resize(done);
  return text;
}

}  // namespace moeserve

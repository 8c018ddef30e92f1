// Reads a whole file into a string: config.json, tokenizer.json, chat templates. Anything that is
// not a regular file (a FIFO, a device, a directory) is refused by name instead of blocking or
// reading forever; every failure names the file.
#pragma once

#include <string>

#include "base/result.h"

namespace moeserve {

Result<std::string> read_text_file(const std::string& path);

}  // namespace moeserve

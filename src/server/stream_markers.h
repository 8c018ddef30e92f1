// Markers (<think>, <tool_call>, ...) that a stream may deliver split across pieces: what the
// reasoning and tool-call parsers hold back until the next piece settles it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace moeserve {

// The length of the longest suffix of `text` that is a proper prefix of `marker`.
inline size_t partial_marker_suffix(std::string_view text, std::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace moeserve

#include "engine/stop_strings.h"

#include <algorithm>

namespace moeserve {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops, bool include_stop_in_output)
    : include_(include_stop_in_output) {
  for (std::string& stop : stops) {
    if (stop.empty()) continue;
    hold_back_ = std::max(hold_back_, stop.size() - 1);
    stops_.push_back(std::move(stop));
  }
}

StopStringMatcher::Step StopStringMatcher::push(std::string_view text) {
  pending_.append(text);
  Step step;
  size_t best = std::string::npos;
  for (const std::string& stop : stops_) {
    const size_t pos = pending_.find(stop);
    if (pos != std::string::npos && (best == std::string::npos || pos < best)) {
      best = pos;
      step.matched = stop;
    }
  }
  if (best != std::string::npos) {
    step.stopped = true;
    step.emit = pending_.substr(0, best + (include_ ? step.matched.size() : 0));
    pending_.clear();
    return step;
  }
  size_t emit_len = pending_.size() > hold_back_ ? pending_.size() - hold_back_ : 0;
  // Do not split a UTF-8 character: back up over continuation bytes (10xxxxxx).
  while (emit_len > 0 && emit_len < pending_.size() &&
         (static_cast<unsigned char>(pending_[emit_len]) & 0xc0u) == 0x80u) {
    --emit_len;
  }
  step.emit = pending_.substr(0, emit_len);
  pending_.erase(0, emit_len);
  return step;
}

std::string StopStringMatcher::flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace moeserve

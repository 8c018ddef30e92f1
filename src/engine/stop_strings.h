// StopStringMatcher: finds stop strings in streamed text across token boundaries. Text that
// could still be the start of a stop string is held back (up to the longest stop minus one
// byte, never splitting a UTF-8 character), so what has been emitted never needs retracting.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace moeserve {

class StopStringMatcher {
 public:
  StopStringMatcher(std::vector<std::string> stops, bool include_stop_in_output);

  struct Step {
    std::string emit;     // text safe to send now
    bool stopped = false;
    std::string matched;  // the stop string that matched
  };
  // Feeds newly decoded text.
  Step push(std::string_view text);
  // Everything still held back (call when the request ends for another reason).
  std::string flush();

 private:
  std::vector<std::string> stops_;
  bool include_;
  size_t hold_back_ = 0;
  std::string pending_;
};

}  // namespace moeserve

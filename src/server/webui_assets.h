// The live page's bundle (webui/, built by esbuild into one self-contained HTML file), embedded
// in the binary at build time (src/server/CMakeLists.txt generates the definition), so `/` works
// offline with no file next to the binary. Empty in a build configured with MOESERVE_WEBUI=OFF.
#pragma once

#include <string_view>

namespace moeserve::webui {

extern const std::string_view kIndexHtml;

}  // namespace moeserve::webui

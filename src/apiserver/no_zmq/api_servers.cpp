// A build without ZeroMQ: --api-server-count N > 1 is refused before anything loads.
#include "apiserver/api_servers.h"

namespace moeserve {

bool api_servers_built() { return false; }

Result<int> serve_with_api_servers(EngineClient&, ApiServersSetup setup) {
  return make_error("--api-server-count {}: this moeserve was built without ZeroMQ (apt-get install libzmq3-dev "
                    "cppzmq-dev, then rebuild); use --api-server-count 1",
                    setup.count);
}

int run_api_server(const std::string&) { return 1; }

}  // namespace moeserve

// EngineClient: the seam between the HTTP server and the engine. The server only ever talks to
// this interface (tests can drive the server with a fake engine). Thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "engine/request.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace moeserve {

struct EngineInfo {
  std::string model_dir;
  const ModelConfig* model_config = nullptr;  // the engine's process only (not an API server's)
  // The model's family and config.json name, wherever the engine is (the server picks the
  // answer parsers and the prompt encoder by it); nullopt: a model of no particular family.
  std::optional<Architecture> architecture;
  std::string architecture_name;
  int max_model_len = 0;
  int64_t num_total_params = 0;
  int64_t num_active_params = 0;
};

struct EngineStats {
  int num_running = 0;
  int num_waiting = 0;
  double kv_cache_usage = 0.0;  // 0..1
};

class EngineClient {
 public:
  virtual ~EngineClient() = default;

  virtual const EngineInfo& info() const = 0;
  virtual std::shared_ptr<const Tokenizer> tokenizer() const = 0;

  // Queues a request; outputs arrive through `on_output` (from the engine thread), ending with
  // one `finished` event — also after abort. Errors here are the request's fault (duplicate id,
  // prompt + max_tokens over max_model_len, token ids outside the vocabulary, queue full).
  virtual Status submit(GenerationRequest request, OutputCallback on_output) = 0;
  // Aborts an in-flight request (client went away); a no-op for unknown or finished ids.
  virtual void abort(const std::string& request_id) = 0;

  virtual EngineStats stats() const = 0;
};

}  // namespace moeserve

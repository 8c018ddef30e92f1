#include "model/backend_support.h"

#include "kernels/ops.h"

namespace moeserve {

std::vector<std::string> cuda_missing_features(const ModelConfig& config) {
  std::vector<std::string> missing;
  if (config.mla && config.mla->indexer && config.mla->indexer->topk > cuda::kMaxIndexTopk) {
    missing.emplace_back("an index_topk above 2048");
  }
  return missing;
}

}  // namespace moeserve

// Which model features each backend computes. The CPU computes every feature a config can hold
// (it is the reference); the CUDA kernels have limits of their own (DeepSeek-V3.2's top-k).
#pragma once

#include <string>
#include <vector>

#include "model/config.h"

namespace moeserve {

// The features of `config` the CUDA kernels do not compute yet, by name (empty: CUDA runs it).
// CudaModel::load refuses such a config naming them, rather than run it wrong; `moeserve plan`
// notes them.
std::vector<std::string> cuda_missing_features(const ModelConfig& config);

}  // namespace moeserve

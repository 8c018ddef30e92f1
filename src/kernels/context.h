// ExecContext: what a kernel needs besides its tensors (the thread pool on the CPU; streams and
// workspaces on the GPU later). Passed explicitly: there are no global pools or streams.
#pragma once

#include "base/thread_pool.h"

namespace moeserve {

struct ExecContext {
  ThreadPool* pool = nullptr;
};

}  // namespace moeserve

// Asynchronous global → shared copies (cp.async, sm_80+): a thread issues 16-byte copies that
// land in shared memory while it computes; wait_all then a barrier makes them visible to the block.
#pragma once

#include <cstdint>

namespace moeserve::cuda {

// 16 bytes, both addresses 16-byte aligned; through L2 only (.cg): staged data is read once per block.
__device__ __forceinline__ void cp_async_16(void* shared_dst, const void* global_src) {
  const auto dst = static_cast<uint32_t>(__cvta_generic_to_shared(shared_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(global_src) : "memory");
}

// 4 bytes, both addresses 4-byte aligned (.ca: the only cache mode below 16 bytes).
__device__ __forceinline__ void cp_async_4(void* shared_dst, const void* global_src) {
  const auto dst = static_cast<uint32_t>(__cvta_generic_to_shared(shared_dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(global_src) : "memory");
}

// Waits for every copy this thread has issued.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

}  // namespace moeserve::cuda

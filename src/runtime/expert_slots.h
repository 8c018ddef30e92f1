// A rank's routed-expert slots as EPLB moves them, on any backend (the CPU's CpuModel, a CUDA
// rank's CudaModel), and the move itself: apply_expert_placement sends the experts other ranks
// newly need over the EP group, then each rank swaps in its new map and slot experts at once.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "comm/communicator.h"
#include "model/expert_map.h"
#include "model/step_model.h"

namespace moeserve {

class ExpertSlots {
 public:
  virtual ~ExpertSlots() = default;
  virtual const ExpertMap& expert_map(int layer) const = 0;
  // Bytes of one slot's expert (expert_slot_segments' total).
  virtual size_t expert_bytes(int layer) const = 0;
  // dst (host) ← slot `slot`'s expert, its segments back to back.
  virtual void copy_slot(int layer, int slot, std::byte* dst) const = 0;
  // Replaces the layer's map and every slot's expert at once; slots[j] (host) holds slot j's bytes.
  virtual void set_placement(int layer, std::shared_ptr<const ExpertMap> map,
                             std::span<const std::byte* const> slots) = 0;
};

// One slot's expert as the byte segments EPLB moves, in the weights' memory: [gate_up weight,
// down weight, gate_up scales, down scales (fp8 or MXFP4), gate_up bias, down bias] (empty where
// the experts have none).
std::array<std::span<std::byte>, 6> expert_slot_segments(const MoeWeights& w, int slot);
// Their total: the bytes of one slot's expert.
size_t expert_slot_bytes(const MoeWeights& w);

// Moves `slots` (this rank's, `rank` of the EP group `ep`) to new_maps, one per MoE layer in
// moe_layers. Collective: every rank of the group runs it with the same maps.
void apply_expert_placement(Communicator& ep, int rank, std::span<const int> moe_layers,
                            const std::vector<std::shared_ptr<const ExpertMap>>& new_maps, ExpertSlots& slots);

}  // namespace moeserve

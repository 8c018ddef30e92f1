#include "runtime/expert_slots.h"

#include <algorithm>
#include <unordered_map>

namespace moeserve {

std::array<std::span<std::byte>, 6> expert_slot_segments(const MoeWeights& w, int slot) {
  const auto bytes = [](const void* p, size_t n) {
    return std::span<std::byte>(static_cast<std::byte*>(const_cast<void*>(p)), p != nullptr ? n : 0);
  };
  const Projection gate_up = w.experts_gate_up.stacked_at(slot);
  const Projection down = w.experts_down.stacked_at(slot);
  // A projection's scales: fp8's float32 block scales or MXFP4's e8m0 ones (scale_bytes either).
  const auto scales = [&](const Projection& p) {
    return bytes(p.mx_scale != nullptr ? static_cast<const void*>(p.mx_scale) : p.scale, p.scale_bytes());
  };
  return {bytes(gate_up.weight, gate_up.weight_bytes()),
          bytes(down.weight, down.weight_bytes()),
          scales(gate_up),
          scales(down),
          bytes(gate_up.bias.data, gate_up.out * dtype_size(gate_up.bias.dtype)),
          bytes(down.bias.data, down.out * dtype_size(down.bias.dtype))};
}

size_t expert_slot_bytes(const MoeWeights& w) {
  size_t bytes = 0;
  for (const auto& segment : expert_slot_segments(w, 0)) bytes += segment.size();
  return bytes;
}

void apply_expert_placement(Communicator& ep, int rank, std::span<const int> moe_layers,
                            const std::vector<std::shared_ptr<const ExpertMap>>& new_maps, ExpertSlots& model) {
  const int world = ep.size();
  for (size_t i = 0; i < moe_layers.size(); ++i) {
    const int layer = moe_layers[i];
    const ExpertMap& old = model.expert_map(layer);
    const ExpertMap& next = *new_maps[i];
    const int per_rank = old.slots_per_rank();
    auto local_index = [&](int owner, int expert) {  // the old local slot of `expert` on `owner`, or -1
      for (int j = 0; j < per_rank; ++j) {
        if (old.phys2log[owner * per_rank + j] == expert) return j;
      }
      return -1;
    };
    // Every rank derives the same transfer list: (dst ascending, new slot ascending), one per
    // expert a rank newly needs, sent by the owner of the expert's first old slot.
    struct Transfer {
      int src, dst, expert;
    };
    std::vector<Transfer> transfers;
    for (int dst = 0; dst < world; ++dst) {
      std::vector<int> fetched;
      for (int j = 0; j < per_rank; ++j) {
        const int expert = next.phys2log[dst * per_rank + j];
        if (local_index(dst, expert) >= 0 || std::find(fetched.begin(), fetched.end(), expert) != fetched.end()) {
          continue;
        }
        fetched.push_back(expert);
        transfers.push_back({old.owner(old.log2phys[expert][0]), dst, expert});
      }
    }
    const size_t row_bytes = model.expert_bytes(layer);  // one expert's segments
    std::vector<int64_t> send_rows(world, 0), recv_rows(world, 0);
    std::vector<int> sent;
    for (const Transfer& t : transfers) {
      if (t.src == rank) ++send_rows[t.dst], sent.push_back(t.expert);
      if (t.dst == rank) ++recv_rows[t.src];
    }
    Tensor send(DType::kU8, Shape{static_cast<int64_t>(sent.size()), static_cast<int64_t>(row_bytes)});
    for (size_t row = 0; row < sent.size(); ++row) {
      model.copy_slot(layer, local_index(rank, sent[row]), send.view().as<std::byte>() + row * row_bytes);
    }
    int64_t received_count = 0;
    for (int64_t rows : recv_rows) received_count += rows;
    Tensor recv(DType::kU8, Shape{received_count, static_cast<int64_t>(row_bytes)});
    ep.all_to_all_rows(send.view(), send_rows, recv.view(), recv_rows);
    // Received rows are grouped by source rank, each group in transfer order.
    std::unordered_map<int, const std::byte*> arrived;
    int64_t row = 0;
    for (int src = 0; src < world; ++src) {
      for (const Transfer& t : transfers) {
        if (t.dst == rank && t.src == src) arrived[t.expert] = recv.view().as<std::byte>() + row++ * row_bytes;
      }
    }
    // The new slots: kept experts from the current slots, the others as they arrived.
    std::vector<std::byte> kept_bytes(per_rank * row_bytes);
    std::vector<const std::byte*> slots(per_rank);
    for (int j = 0; j < per_rank; ++j) {
      const int expert = next.phys2log[rank * per_rank + j];
      const int kept = local_index(rank, expert);
      if (kept >= 0) {
        model.copy_slot(layer, kept, kept_bytes.data() + j * row_bytes);
        slots[j] = kept_bytes.data() + j * row_bytes;
      } else {
        slots[j] = arrived.at(expert);
      }
    }
    model.set_placement(layer, new_maps[i], slots);
  }
}

}  // namespace moeserve

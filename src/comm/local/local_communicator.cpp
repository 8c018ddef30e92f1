#include "comm/local/local_communicator.h"

#include <cstring>
#include <numeric>

namespace moeserve {

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(LocalGroup& group, int rank) : group_(group), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_.size_; }

  void all_reduce_sum(const TensorView& buf) override {
    MS_CHECK(buf.dtype == DType::kF32);
    if (size() == 1) return;
    const int64_t count = buf.numel();
    publish({.send = buf.data, .recv = nullptr, .counts = {}, .value = count});
    // out[i] = in_0[i] + in_1[i] + … in rank order, into a scratch copy: buf is
    // still read by the others.
    scratch_.resize(static_cast<size_t>(count));
    for (int src = 0; src < size(); ++src) {
      MS_CHECK(slot(src).value == count);
      const float* in = static_cast<const float*>(slot(src).send);
      if (src == 0) {
        std::memcpy(scratch_.data(), in, count * sizeof(float));
      } else {
        for (int64_t i = 0; i < count; ++i) scratch_[i] += in[i];
      }
    }
    group_.barrier_.arrive_and_wait();
    std::memcpy(buf.data, scratch_.data(), count * sizeof(float));
  }

  void all_gather_rows(const TensorView& in, std::span<const int64_t> rows_per_rank, const TensorView& out) override {
    const size_t row_bytes = row_bytes_of(in, out);
    MS_CHECK(static_cast<int>(rows_per_rank.size()) == size() && rows_per_rank[rank_] == rows_of(in));
    publish({.send = in.data, .recv = nullptr, .counts = {}, .value = rows_of(in)});
    int64_t offset = 0;
    for (int src = 0; src < size(); ++src) {
      MS_CHECK(slot(src).value == rows_per_rank[src]);
      copy_rows(out, offset, slot(src).send, rows_per_rank[src], row_bytes);
      offset += rows_per_rank[src];
    }
    MS_CHECK(offset == rows_of(out));
    group_.barrier_.arrive_and_wait();
  }

  void reduce_scatter_sum(const TensorView& in, std::span<const int64_t> rows_per_rank,
                          const TensorView& out) override {
    MS_CHECK(in.dtype == DType::kF32 && out.dtype == DType::kF32);
    MS_CHECK(static_cast<int>(rows_per_rank.size()) == size() && rows_per_rank[rank_] == rows_of(out));
    const int64_t width = width_of(out);
    MS_CHECK(width_of(in) == width);
    MS_CHECK(rows_of(in) == std::accumulate(rows_per_rank.begin(), rows_per_rank.end(), int64_t{0}));
    publish({.send = in.data, .recv = nullptr, .counts = {}, .value = in.numel()});
    int64_t first_row = 0;
    for (int r = 0; r < rank_; ++r) first_row += rows_per_rank[r];
    const int64_t count = rows_of(out) * width;
    float* dst = out.as<float>();
    for (int src = 0; src < size(); ++src) {
      MS_CHECK(slot(src).value == in.numel());
      const float* part = static_cast<const float*>(slot(src).send) + first_row * width;
      if (src == 0) {
        if (count > 0) std::memcpy(dst, part, count * sizeof(float));
      } else {
        for (int64_t i = 0; i < count; ++i) dst[i] += part[i];
      }
    }
    group_.barrier_.arrive_and_wait();
  }

  std::vector<int64_t> all_to_all_counts(std::span<const int64_t> send_rows) override {
    MS_CHECK(static_cast<int>(send_rows.size()) == size());
    publish({.send = nullptr, .recv = nullptr, .counts = send_rows, .value = 0});
    std::vector<int64_t> recv_rows(size());
    for (int src = 0; src < size(); ++src) recv_rows[src] = slot(src).counts[rank_];
    group_.barrier_.arrive_and_wait();
    return recv_rows;
  }

  void all_to_all_rows(const TensorView& send, std::span<const int64_t> send_rows, const TensorView& recv,
                       std::span<const int64_t> recv_rows) override {
    const size_t row_bytes = row_bytes_of(send, recv);
    MS_CHECK(static_cast<int>(send_rows.size()) == size() && static_cast<int>(recv_rows.size()) == size());
    publish({.send = send.data, .recv = nullptr, .counts = send_rows, .value = 0});
    int64_t offset = 0;
    for (int src = 0; src < size(); ++src) {
      std::span<const int64_t> src_counts = slot(src).counts;
      MS_CHECK(src_counts[rank_] == recv_rows[src]);
      int64_t src_offset = 0;  // rows src sends to ranks before this one
      for (int dst = 0; dst < rank_; ++dst) src_offset += src_counts[dst];
      copy_rows(recv, offset, static_cast<const char*>(slot(src).send) + src_offset * row_bytes, recv_rows[src],
                row_bytes);
      offset += recv_rows[src];
    }
    MS_CHECK(offset == rows_of(recv));
    group_.barrier_.arrive_and_wait();
  }

  std::vector<int64_t> all_gather_value(int64_t value) override {
    publish({.send = nullptr, .recv = nullptr, .counts = {}, .value = value});
    std::vector<int64_t> values(size());
    for (int src = 0; src < size(); ++src) values[src] = slot(src).value;
    group_.barrier_.arrive_and_wait();
    return values;
  }

  void barrier() override { group_.barrier_.arrive_and_wait(); }

 private:
  // Writes this rank's slot and waits until every rank has written its own.
  void publish(const LocalGroup::Slot& mine) {
    group_.slots_[rank_] = mine;
    group_.barrier_.arrive_and_wait();
  }
  const LocalGroup::Slot& slot(int rank) const { return group_.slots_[rank]; }
  static int64_t rows_of(const TensorView& view) { return view.shape.rank() == 0 ? 1 : view.dim(0); }
  // Elements per row (the product of the dims after the first; safe for zero
  // rows).
  static int64_t width_of(const TensorView& view) {
    int64_t width = 1;
    for (int axis = 1; axis < view.shape.rank(); ++axis) width *= view.dim(axis);
    return width;
  }
  static size_t row_bytes_of(const TensorView& a, const TensorView& b) {
    MS_CHECK(a.dtype == b.dtype && width_of(a) == width_of(b));
    return static_cast<size_t>(width_of(a)) * dtype_size(a.dtype);
  }
  static void copy_rows(const TensorView& dst, int64_t dst_row, const void* src, int64_t rows, size_t row_bytes) {
    if (rows == 0) return;
    std::memcpy(static_cast<char*>(dst.data) + dst_row * row_bytes, src, rows * row_bytes);
  }

  LocalGroup& group_;
  int rank_;
  std::vector<float> scratch_;
};

LocalGroup::LocalGroup(int size) : size_(size), barrier_(size), slots_(size) { MS_CHECK(size >= 1); }

std::unique_ptr<Communicator> LocalGroup::communicator(int rank) {
  MS_CHECK(rank >= 0 && rank < size_);
  return std::make_unique<LocalCommunicator>(*this, rank);
}

}  // namespace moeserve

// The in-process communicator: every collective against a serial computation of
// what it must produce, over group sizes 1–4, uneven and empty row counts, and
// many repetitions so that a missing barrier (a rank reading a buffer another
// rank already reuses) would show.
#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "comm/local/local_communicator.h"

namespace moeserve {
namespace {

// Runs body(comm) on `size` threads, one per rank, and joins them.
void run_ranks(int size, const std::function<void(Communicator&)>& body) {
  LocalGroup group(size);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int rank = 0; rank < size; ++rank) comms.push_back(group.communicator(rank));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) threads.emplace_back([&, rank] { body(*comms[rank]); });
  for (auto& thread : threads) thread.join();
}

// A value that differs per rank, row, column and repetition, exactly
// representable in float.
float value_of(int rank, int64_t row, int64_t col, int rep) {
  return static_cast<float>((rank * 7 + row * 3 + col + rep) % 23) * 0.25f - 2.0f;
}

class LocalCommTest : public ::testing::TestWithParam<int> {};

TEST_P(LocalCommTest, AllReduceSumsInRankOrderOnEveryRank) {
  const int size = GetParam();
  std::vector<std::vector<float>> results(size);
  run_ranks(size, [&](Communicator& comm) {
    for (int rep = 0; rep < 50; ++rep) {
      Tensor buf(DType::kF32, Shape{3, 5});
      for (int64_t i = 0; i < 15; ++i) buf.f32()[i] = value_of(comm.rank(), i / 5, i % 5, rep) * 1e-3f + 1.0f;
      comm.all_reduce_sum(buf.view());
      for (int64_t i = 0; i < 15; ++i) {
        float expected = 0.0f;
        for (int r = 0; r < size; ++r) {
          const float v = value_of(r, i / 5, i % 5, rep) * 1e-3f + 1.0f;
          expected = r == 0 ? v : expected + v;
        }
        ASSERT_EQ(buf.f32()[i], expected) << "rank " << comm.rank() << " rep " << rep;  // bitwise
      }
    }
  });
}

TEST_P(LocalCommTest, AllGatherRowsWithUnevenAndEmptyRanks) {
  const int size = GetParam();
  run_ranks(size, [&](Communicator& comm) {
    for (int rep = 0; rep < 30; ++rep) {
      const int64_t my_rows = (comm.rank() + rep) % 3;  // 0, 1 or 2 rows
      Tensor in(DType::kI32, Shape{my_rows, 4});
      for (int64_t i = 0; i < my_rows * 4; ++i) in.view().as<int32_t>()[i] = comm.rank() * 100 + rep * 10 + i;
      const std::vector<int64_t> rows = comm.all_gather_value(my_rows);
      int64_t total = 0;
      for (int r = 0; r < size; ++r) {
        ASSERT_EQ(rows[r], (r + rep) % 3);
        total += rows[r];
      }
      Tensor out(DType::kI32, Shape{total, 4});
      comm.all_gather_rows(in.view(), rows, out.view());
      int64_t offset = 0;
      for (int r = 0; r < size; ++r) {
        for (int64_t i = 0; i < rows[r] * 4; ++i) {
          ASSERT_EQ(out.view().as<int32_t>()[offset * 4 + i], r * 100 + rep * 10 + i);
        }
        offset += rows[r];
      }
    }
  });
}

TEST_P(LocalCommTest, ReduceScatterSumsEachOwnersRows) {
  const int size = GetParam();
  run_ranks(size, [&](Communicator& comm) {
    std::vector<int64_t> rows(size);
    int64_t total = 0;
    for (int r = 0; r < size; ++r) total += rows[r] = (r * 2 + 1) % 4;  // 1, 3, 1, 3 (never all empty)
    for (int rep = 0; rep < 30; ++rep) {
      Tensor in(DType::kF32, Shape{total, 6});
      for (int64_t i = 0; i < total * 6; ++i) in.f32()[i] = value_of(comm.rank(), i / 6, i % 6, rep);
      Tensor out(DType::kF32, Shape{rows[comm.rank()], 6});
      comm.reduce_scatter_sum(in.view(), rows, out.view());
      int64_t first = 0;
      for (int r = 0; r < comm.rank(); ++r) first += rows[r];
      for (int64_t i = 0; i < rows[comm.rank()] * 6; ++i) {
        float expected = 0.0f;
        for (int r = 0; r < size; ++r) expected += value_of(r, first + i / 6, i % 6, rep);
        ASSERT_EQ(out.f32()[i], expected);
      }
    }
  });
}

TEST_P(LocalCommTest, AllToAllDeliversRowsGroupedBySource) {
  const int size = GetParam();
  run_ranks(size, [&](Communicator& comm) {
    for (int rep = 0; rep < 30; ++rep) {
      // rank s sends (s + d + rep) % 3 rows to rank d; row values encode (s, d,
      // row).
      std::vector<int64_t> send_rows(size);
      int64_t total = 0;
      for (int d = 0; d < size; ++d) total += send_rows[d] = (comm.rank() + d + rep) % 3;
      Tensor send(DType::kF32, Shape{total, 2});
      int64_t row = 0;
      for (int d = 0; d < size; ++d) {
        for (int64_t i = 0; i < send_rows[d]; ++i, ++row) {
          send.f32()[row * 2] = static_cast<float>(comm.rank() * 1000 + d * 10 + i);
          send.f32()[row * 2 + 1] = static_cast<float>(rep);
        }
      }
      const std::vector<int64_t> recv_rows = comm.all_to_all_counts(send_rows);
      int64_t recv_total = 0;
      for (int s = 0; s < size; ++s) {
        ASSERT_EQ(recv_rows[s], (s + comm.rank() + rep) % 3);
        recv_total += recv_rows[s];
      }
      Tensor recv(DType::kF32, Shape{recv_total, 2});
      comm.all_to_all_rows(send.view(), send_rows, recv.view(), recv_rows);
      row = 0;
      for (int s = 0; s < size; ++s) {
        for (int64_t i = 0; i < recv_rows[s]; ++i, ++row) {
          ASSERT_EQ(recv.f32()[row * 2], static_cast<float>(s * 1000 + comm.rank() * 10 + i));
          ASSERT_EQ(recv.f32()[row * 2 + 1], static_cast<float>(rep));
        }
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(GroupSizes, LocalCommTest, ::testing::Values(1, 2, 3, 4));

}  // namespace
}  // namespace moeserve

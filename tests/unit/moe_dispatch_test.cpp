// The expert-parallel dispatch (model/moe_dispatch.h) on CPU ranks, both backends, against a
// serial computation of what it must return: every token's sum over its top_k slots of
// weight · expert(x), where "expert" s scales a row by (s + 1) and adds s. Ranks hold unequal
// token counts (one none at all), and their step arenas are small enough that the dispatch must
// run in several rounds; the workspace it leaves in use is checked to be back where it was.
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <thread>

#include "comm/local/local_communicator.h"
#include "model/moe_dispatch.h"
#include "model/parallel.h"
#include "runtime/cpu_step_backend.h"

namespace moeserve {
namespace {

constexpr int kHidden = 24;
constexpr int kTopK = 3;
constexpr int kSlotsPerRank = 4;

float expert(int slot, float x) { return x * float(slot + 1) + float(slot); }

struct RankData {
  std::vector<float> x;  // [n, kHidden]
  std::vector<int32_t> slots;
  std::vector<float> weights;  // [n, kTopK] each
};

RankData make_rank_data(int rank, int n, int num_slots) {
  std::mt19937 rng(1234 + rank);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::uniform_int_distribution<int> slot(0, num_slots - 1);
  RankData d;
  for (int i = 0; i < n * kHidden; ++i) d.x.push_back(value(rng));
  for (int t = 0; t < n; ++t) {
    std::vector<int32_t> chosen;
    while (static_cast<int>(chosen.size()) < kTopK) {  // distinct slots, as a router picks them
      const int s = slot(rng);
      if (std::find(chosen.begin(), chosen.end(), s) == chosen.end()) chosen.push_back(s);
    }
    for (int k = 0; k < kTopK; ++k) {
      d.slots.push_back(chosen[k]);
      d.weights.push_back(0.25f + 0.5f * std::abs(value(rng)));
    }
  }
  return d;
}

// [n, kHidden]: every token's full routed sum.
std::vector<float> expected_sums(const RankData& d) {
  const size_t n = d.slots.size() / kTopK;
  std::vector<float> out(n * kHidden, 0.0f);
  for (size_t t = 0; t < n; ++t) {
    for (int k = 0; k < kTopK; ++k) {
      for (int h = 0; h < kHidden; ++h) {
        out[t * kHidden + h] += d.weights[t * kTopK + k] * expert(d.slots[t * kTopK + k], d.x[t * kHidden + h]);
      }
    }
  }
  return out;
}

class MoeDispatchTest : public ::testing::TestWithParam<All2AllBackend> {};

TEST_P(MoeDispatchTest, EveryTokenGetsItsSlotsSumsOverSeveralRounds) {
  const std::vector<int> counts = {37, 0, 11, 64};  // tokens per rank
  const int ep = static_cast<int>(counts.size());
  const int num_slots = ep * kSlotsPerRank;
  // Per arrived row, the dispatch budgets 4 rows of kHidden floats plus what run_local asks for.
  const size_t run_local_bytes = 2 * kHidden * sizeof(float);
  const size_t arena_bytes = 64 << 10;  // rounds of ~ (64K - 8K) / (4 ranks × ~300 B) ≈ 45 rows
  LocalGroup group(ep);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int rank = 0; rank < ep; ++rank) comms.push_back(group.communicator(rank));
  std::vector<RankData> data;
  for (int rank = 0; rank < ep; ++rank) data.push_back(make_rank_data(rank, counts[rank], num_slots));
  std::vector<std::vector<float>> results(ep);
  std::vector<int> calls(ep, 0);
  std::vector<size_t> arena_after(ep, 0);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < ep; ++rank) {
    threads.emplace_back([&, rank] {
      ExecContext exec{};
      CpuStepBackend backend(exec, arena_bytes);
      StepArena& arena = backend.arena();
      // The caller's rows live in the arena, as the decoder loop's do.
      const int n = counts[rank];
      float* x = arena.alloc<float>(size_t(n) * kHidden);
      std::copy(data[rank].x.begin(), data[rank].x.end(), x);
      float* out = arena.alloc<float>(size_t(n) * kHidden);
      const size_t used = arena.used();
      const RunLocalExperts run_local = [&](const RoutedTokens& arrived, const TensorView& partial) {
        ++calls[rank];
        const int64_t rows = arrived.x.dim(0);
        // run_local may take up to its budget from the arena.
        arena.alloc<float>(size_t(rows) * 2 * kHidden);
        const float* in = arrived.x.as<float>();
        float* sums = partial.as<float>();
        for (int64_t t = 0; t < rows; ++t) {
          for (int h = 0; h < kHidden; ++h) sums[t * kHidden + h] = 0.0f;
          for (int k = 0; k < kTopK; ++k) {
            const int slot = arrived.slots[t * kTopK + k];
            if (slot / kSlotsPerRank != rank) continue;
            for (int h = 0; h < kHidden; ++h) {
              sums[t * kHidden + h] += arrived.weights[t * kTopK + k] * expert(slot, in[t * kHidden + h]);
            }
          }
        }
      };
      const RoutedTokens tokens{.x = TensorView{x, DType::kF32, Shape{n, kHidden}},
                                .slots = data[rank].slots,
                                .weights = data[rank].weights,
                                .top_k = kTopK};
      const EpDispatch dispatch{.ep = *comms[rank], .backend = backend, .run_local_bytes_per_row = run_local_bytes};
      const TensorView out_view{out, DType::kF32, Shape{n, kHidden}};
      if (GetParam() == All2AllBackend::kAlltoall) {
        ep_alltoall(dispatch, tokens, run_local, kSlotsPerRank, out_view);
      } else {
        ep_allgather_reducescatter(dispatch, tokens, run_local, out_view);
      }
      arena_after[rank] = arena.used() - used;
      results[rank].assign(out, out + size_t(n) * kHidden);
    });
  }
  for (auto& thread : threads) thread.join();
  for (int rank = 0; rank < ep; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    // 64 tokens on the busiest rank, fewer per round: every rank ran more than one round.
    EXPECT_GT(calls[rank], 1);
    EXPECT_EQ(arena_after[rank], 0u);
    const std::vector<float> expected = expected_sums(data[rank]);
    ASSERT_EQ(results[rank].size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_NEAR(results[rank][i], expected[i], 1e-5f * (1.0f + std::abs(expected[i]))) << "element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, MoeDispatchTest,
                         ::testing::Values(All2AllBackend::kAllgatherReducescatter, All2AllBackend::kAlltoall),
                         [](const auto& info) {
                           return info.param == All2AllBackend::kAlltoall ? std::string("alltoall")
                                                                          : std::string("allgather_reducescatter");
                         });

}  // namespace
}  // namespace moeserve

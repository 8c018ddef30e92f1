// The greedy choice: argmax_token returns the first index of the largest logit, as
// std::max_element does, for any length (tails shorter than its 8 lanes) and with ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "runtime/sampler.h"

namespace moeserve {
namespace {

int32_t reference(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(ArgmaxToken, MatchesMaxElementOnRandomRowsOfEveryLength) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int n : {1, 2, 7, 8, 9, 15, 16, 17, 1000, 32000, 151936}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> v(n);
      for (float& x : v) x = normal(rng);
      ASSERT_EQ(argmax_token(v), reference(v)) << n;
    }
  }
}

TEST(ArgmaxToken, FirstOfTiesAndMaxInTheTailOrAtTheEdges) {
  std::vector<float> v(21, -1.0f);
  v[20] = 5.0f;  // the tail past the last full group of 8
  EXPECT_EQ(argmax_token(v), 20);
  v[3] = 5.0f;
  v[11] = 5.0f;
  EXPECT_EQ(argmax_token(v), 3);
  std::vector<float> all_equal(13, 0.5f);
  EXPECT_EQ(argmax_token(all_equal), 0);
  std::vector<float> negative = {-9.0f, -3.0f, -7.0f};
  EXPECT_EQ(argmax_token(negative), 1);
}

}  // namespace
}  // namespace moeserve

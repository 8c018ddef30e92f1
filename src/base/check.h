// Always-on invariant checks for programmer bugs (never for anything a user can cause: that
// is a Result). A failed check prints where and why, then aborts.
#pragma once

#include <cstdio>
#include <cstdlib>

#define MS_CHECK(cond)                                                                     \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "moeserve: internal check failed at %s:%d: %s\n", __FILE__,    \
                   __LINE__, #cond);                                                       \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)

#define MS_CHECK_MSG(cond, msg)                                                            \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "moeserve: internal check failed at %s:%d: %s (%s)\n", __FILE__, \
                   __LINE__, #cond, msg);                                                  \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)

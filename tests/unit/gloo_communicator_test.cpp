// comm/gloo across real processes on 127.0.0.1: each test forks one child per rank, and a
// child's failed expectations, exceptions or hangs become its exit status, which the parent
// checks. The collectives are checked against values computed serially and, bit for bit,
// against LocalCommunicator running the same inputs in threads; the all-reduce result is also
// compared across the processes' files. Failure paths: a rank that never arrives, a store host
// that never comes, a peer that dies mid-collective and a peer that stays silent must each end
// in an error naming the rank, within the timeout, never a hang. Also TcpStore on its own.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "comm/gloo/gloo_communicator.h"
#include "comm/gloo/tcp_store.h"
#include "comm/local/local_communicator.h"

namespace moeserve {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A port nothing listens on right now (the kernel's pick for an ephemeral bind).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Forks one child per entry of `ranks`, runs body(rank) in it and returns each child's exit
// status: 0 when body ran without a failed expectation, 1 when one failed, 2 on an exception,
// 128 + signal when it died of one, -1 when it was still running after `limit` (then killed).
std::vector<int> run_processes(const std::vector<int>& ranks, const std::function<void(int rank)>& body,
                               std::chrono::seconds limit = std::chrono::seconds(60)) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids;
  for (int rank : ranks) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 0;
      try {
        body(rank);
        code = ::testing::Test::HasFailure() ? 1 : 0;
      } catch (const std::exception& error) {
        std::fprintf(stderr, "rank %d: exception: %s\n", rank, error.what());
        code = 2;
      }
      std::fflush(stdout);
      std::fflush(stderr);
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  std::vector<int> codes(pids.size(), -1);
  std::vector<bool> done(pids.size(), false);
  const auto deadline = Clock::now() + limit;
  size_t left = pids.size();
  while (left > 0 && Clock::now() < deadline) {
    for (size_t i = 0; i < pids.size(); ++i) {
      int status = 0;
      if (done[i] || ::waitpid(pids[i], &status, WNOHANG) != pids[i]) continue;
      done[i] = true;
      --left;
      codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    if (done[i]) continue;
    ::kill(pids[i], SIGKILL);
    ::waitpid(pids[i], nullptr, 0);
  }
  return codes;
}

std::vector<int> all_ranks(int size) {
  std::vector<int> ranks(size);
  for (int r = 0; r < size; ++r) ranks[r] = r;
  return ranks;
}

GlooOptions options_for(int port, int size, int rank, milliseconds timeout = milliseconds(20'000)) {
  return {.address = "127.0.0.1",
          .port = port,
          .world_size = size,
          .rank = rank,
          .timeout = timeout,
          .prefix = "test",
          .local_address = {}};
}

// A value that differs per rank, element and repetition, with magnitudes 1e-3 … 1e4 so that
// float sums in different orders round differently (for 3+ ranks).
float reduce_input(int rank, int64_t i, int rep) {
  static constexpr float kScales[] = {1e-3f, 1.0f, 1e4f};
  const float base = static_cast<float>((rank * 7919 + i * 104729 + rep * 31) % 1000) * 0.00137f + 0.1f;
  return base * kScales[(rank + i) % 3] * ((rank + i + rep) % 2 == 0 ? 1.0f : -1.0f);
}
float rank_order_sum(int size, int64_t i, int rep) {
  float sum = reduce_input(0, i, rep);
  for (int r = 1; r < size; ++r) sum += reduce_input(r, i, rep);
  return sum;
}

std::vector<char> bytes_of(const Tensor& tensor) {
  const char* data = static_cast<const char*>(tensor.view().data);
  return std::vector<char>(data, data + tensor.view().nbytes());
}

// Every collective once, with rank-dependent inputs, each output checked against its serial
// computation; returns the outputs' bytes (to compare implementations bit for bit).
std::vector<std::vector<char>> run_sequence(Communicator& comm, int rep) {
  const int size = comm.size();
  const int rank = comm.rank();
  std::vector<std::vector<char>> outputs;

  // all_gather_value
  const std::vector<int64_t> values = comm.all_gather_value(rank * 1000 + rep);
  EXPECT_EQ(static_cast<int>(values.size()), size);
  for (int r = 0; r < size; ++r) EXPECT_EQ(values[r], r * 1000 + rep);
  outputs.emplace_back(reinterpret_cast<const char*>(values.data()),
                       reinterpret_cast<const char*>(values.data() + values.size()));

  // all_reduce_sum, float32 [7, 13] (91 elements: chunks of unequal size)
  Tensor reduced(DType::kF32, Shape{7, 13});
  for (int64_t i = 0; i < 91; ++i) reduced.f32()[i] = reduce_input(rank, i, rep);
  comm.all_reduce_sum(reduced.view());
  for (int64_t i = 0; i < 91; ++i) {
    const float want = rank_order_sum(size, i, rep);
    EXPECT_EQ(std::memcmp(&reduced.f32()[i], &want, sizeof(float)), 0)  // bitwise
        << "rank " << rank << " element " << i << ": " << reduced.f32()[i] << " vs " << want;
  }
  outputs.push_back(bytes_of(reduced));

  // all_reduce_sum of fewer elements than ranks (empty chunks)
  Tensor tiny(DType::kF32, Shape{1});
  tiny.f32()[0] = reduce_input(rank, 5, rep);
  comm.all_reduce_sum(tiny.view());
  EXPECT_EQ(tiny.f32()[0], rank_order_sum(size, 5, rep));
  outputs.push_back(bytes_of(tiny));

  // all_gather_rows, bf16 [rows_r, 5] with 0, 1 or 2 rows per rank
  const int64_t my_rows = (rank + rep) % 3;
  Tensor gather_in(DType::kBF16, Shape{my_rows, 5});
  auto bf16_value = [](int r, int64_t i, int rep) { return f32_to_bf16(static_cast<float>(r * 100 + i) + rep * 0.5f); };
  for (int64_t i = 0; i < my_rows * 5; ++i) gather_in.view().as<uint16_t>()[i] = bf16_value(rank, i, rep);
  const std::vector<int64_t> rows = comm.all_gather_value(my_rows);
  int64_t total = 0;
  for (int64_t n : rows) total += n;
  Tensor gathered(DType::kBF16, Shape{total, 5});
  comm.all_gather_rows(gather_in.view(), rows, gathered.view());
  int64_t offset = 0;
  for (int r = 0; r < size; ++r) {
    EXPECT_EQ(rows[r], (r + rep) % 3);
    for (int64_t i = 0; i < rows[r] * 5; ++i) {
      EXPECT_EQ(gathered.view().as<uint16_t>()[offset * 5 + i], bf16_value(r, i, rep)) << "from rank " << r;
    }
    offset += rows[r];
  }
  outputs.push_back(bytes_of(gathered));

  // reduce_scatter_sum, float32 [Σ rows_r, 6] with 0, 1 or 2 rows per owner
  std::vector<int64_t> owned(size);
  int64_t owned_total = 0;
  for (int r = 0; r < size; ++r) owned_total += owned[r] = (r * 2 + rep) % 3;
  Tensor scatter_in(DType::kF32, Shape{owned_total, 6});
  for (int64_t i = 0; i < owned_total * 6; ++i) scatter_in.f32()[i] = reduce_input(rank, i, rep);
  Tensor scattered(DType::kF32, Shape{owned[rank], 6});
  comm.reduce_scatter_sum(scatter_in.view(), owned, scattered.view());
  int64_t first = 0;
  for (int r = 0; r < rank; ++r) first += owned[r];
  for (int64_t i = 0; i < owned[rank] * 6; ++i) {
    EXPECT_EQ(scattered.f32()[i], rank_order_sum(size, first * 6 + i, rep)) << "rank " << rank << " element " << i;
  }
  outputs.push_back(bytes_of(scattered));

  // all_to_all_counts + all_to_all_rows, int32 [·, 3]: rank s sends (s + 2d + rep) % 3 rows to d
  std::vector<int64_t> send_rows(size);
  int64_t send_total = 0;
  for (int d = 0; d < size; ++d) send_total += send_rows[d] = (rank + 2 * d + rep) % 3;
  Tensor send(DType::kI32, Shape{send_total, 3});
  int64_t row = 0;
  for (int d = 0; d < size; ++d) {
    for (int64_t i = 0; i < send_rows[d]; ++i, ++row) {
      for (int c = 0; c < 3; ++c) send.view().as<int32_t>()[row * 3 + c] = rank * 10000 + d * 100 + i * 10 + c + rep;
    }
  }
  const std::vector<int64_t> recv_rows = comm.all_to_all_counts(send_rows);
  int64_t recv_total = 0;
  for (int s = 0; s < size; ++s) {
    EXPECT_EQ(recv_rows[s], (s + 2 * rank + rep) % 3);
    recv_total += recv_rows[s];
  }
  Tensor recv(DType::kI32, Shape{recv_total, 3});
  comm.all_to_all_rows(send.view(), send_rows, recv.view(), recv_rows);
  row = 0;
  for (int s = 0; s < size; ++s) {
    for (int64_t i = 0; i < recv_rows[s]; ++i, ++row) {
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(recv.view().as<int32_t>()[row * 3 + c], s * 10000 + rank * 100 + i * 10 + c + rep);
      }
    }
  }
  outputs.push_back(bytes_of(recv));

  comm.barrier();
  return outputs;
}

// The same sequence on LocalCommunicator threads; rank r's outputs.
std::vector<std::vector<std::vector<char>>> run_local(int size, int rep) {
  LocalGroup group(size);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < size; ++r) comms.push_back(group.communicator(r));
  std::vector<std::vector<std::vector<char>>> outputs(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back([&, r] { outputs[r] = run_sequence(*comms[r], rep); });
  for (auto& thread : threads) thread.join();
  return outputs;
}

class GlooCommTest : public ::testing::TestWithParam<int> {};

TEST_P(GlooCommTest, EveryCollectiveMatchesSerialAndLocalCommunicator) {
  const int size = GetParam();
  const int port = free_port();
  const auto dir = std::filesystem::temp_directory_path() / ("gloo_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  constexpr int kReps = 12;
  const std::vector<int> codes = run_processes(all_ranks(size), [&](int rank) {
    auto comm = GlooCommunicator::connect(options_for(port, size, rank));
    ASSERT_TRUE(comm.ok()) << comm.error().message;
    ASSERT_EQ((*comm)->rank(), rank);
    ASSERT_EQ((*comm)->size(), size);
    ASSERT_EQ((*comm)->peer_address(rank), "127.0.0.1");
    for (int rep = 0; rep < kReps; ++rep) {
      const auto mine = run_sequence(**comm, rep);
      const auto local = run_local(size, rep);
      ASSERT_EQ(mine.size(), local[rank].size());
      for (size_t k = 0; k < mine.size(); ++k) {
        EXPECT_EQ(mine[k], local[rank][k]) << "output " << k << " of rep " << rep << " differs from LocalCommunicator";
      }
      if (rep == kReps - 1) {  // the [7, 13] all-reduce result, for the parent to compare across ranks
        std::ofstream(dir / ("allreduce." + std::to_string(rank)), std::ios::binary)
            .write(mine[1].data(), static_cast<std::streamsize>(mine[1].size()));
      }
    }
  });
  for (int rank = 0; rank < size; ++rank) EXPECT_EQ(codes[rank], 0) << "rank " << rank;

  // Every process holds bitwise the rank-order sum.
  std::vector<float> expected(91);
  bool order_matters = false;
  for (int64_t i = 0; i < 91; ++i) {
    expected[i] = rank_order_sum(size, i, kReps - 1);
    float reversed = reduce_input(size - 1, i, kReps - 1);
    for (int r = size - 2; r >= 0; --r) reversed += reduce_input(r, i, kReps - 1);
    if (reversed != expected[i]) order_matters = true;
  }
  if (size >= 3) {
    EXPECT_TRUE(order_matters) << "the inputs do not tell a rank-order sum from another order";
  }
  for (int rank = 0; rank < size; ++rank) {
    std::ifstream file(dir / ("allreduce." + std::to_string(rank)), std::ios::binary);
    std::vector<char> got((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    ASSERT_EQ(got.size(), 91 * sizeof(float)) << "rank " << rank;
    EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size()), 0) << "rank " << rank;
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(GroupSizes, GlooCommTest, ::testing::Values(1, 2, 3));

TEST(GlooCommunicator, RankThatNeverArrivesFailsWithinTheTimeout) {
  const int port = free_port();
  const std::vector<int> codes = run_processes({0, 1}, [&](int rank) {  // rank 2 of 3 never starts
    const auto start = Clock::now();
    auto comm = GlooCommunicator::connect(options_for(port, 3, rank, milliseconds(2000)));
    const auto elapsed = Clock::now() - start;
    ASSERT_FALSE(comm.ok());
    // Rank 1 may see the store's host (rank 0) give up and exit first: it names rank 2 either way.
    const std::string expected = rank == 0 ? "rank 2 did not join within 2000 ms" : "rank 2";
    EXPECT_NE(comm.error().message.find(expected), std::string::npos) << comm.error().message;
    EXPECT_NE(comm.error().message.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
        << comm.error().message;
    EXPECT_GE(elapsed, milliseconds(1900));
    EXPECT_LT(elapsed, milliseconds(6000));
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

TEST(GlooCommunicator, StoreHostThatNeverComesFailsWithinTheTimeout) {
  const int port = free_port();
  const std::vector<int> codes = run_processes({1}, [&](int rank) {  // rank 0 (the store's host) never starts
    const auto start = Clock::now();
    auto comm = GlooCommunicator::connect(options_for(port, 2, rank, milliseconds(1500)));
    const auto elapsed = Clock::now() - start;
    ASSERT_FALSE(comm.ok());
    EXPECT_NE(comm.error().message.find("cannot reach the rendezvous store at 127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << comm.error().message;
    EXPECT_NE(comm.error().message.find("rank 1 of 2"), std::string::npos) << comm.error().message;
    EXPECT_GE(elapsed, milliseconds(1400));
    EXPECT_LT(elapsed, milliseconds(5000));
  });
  EXPECT_EQ(codes, (std::vector<int>{0}));
}

TEST(GlooCommunicator, PeerThatExitsMidRunFailsTheCollectiveNotAHang) {
  const int port = free_port();
  // A 30 s timeout: the survivors must notice the closed connections, not wait the timeout out.
  const std::vector<int> codes = run_processes(all_ranks(3), [&](int rank) {
    auto comm = GlooCommunicator::connect(options_for(port, 3, rank, milliseconds(30'000)));
    ASSERT_TRUE(comm.ok()) << comm.error().message;
    Tensor buf(DType::kF32, Shape{1000});
    for (int64_t i = 0; i < 1000; ++i) buf.f32()[i] = static_cast<float>(rank + i);
    (*comm)->all_reduce_sum(buf.view());
    EXPECT_EQ(buf.f32()[10], 33.0f);
    if (rank == 2) ::_exit(0);  // dies between collectives, without closing anything itself
    const auto start = Clock::now();
    try {
      (*comm)->all_reduce_sum(buf.view());
      ADD_FAILURE() << "rank " << rank << ": all_reduce_sum succeeded without rank 2";
    } catch (const CommError& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("all_reduce_sum"), std::string::npos) << message;
      EXPECT_NE(message.find("rank " + std::to_string(rank) + " of 3"), std::string::npos) << message;
      // Rank 0 waits on rank 2 first; rank 1 on rank 0, which may already have failed and left.
      if (rank == 0) {
        EXPECT_NE(message.find("rank 2 (127.0.0.1)"), std::string::npos) << message;
      }
    }
    EXPECT_LT(Clock::now() - start, milliseconds(10'000));
    // The group stays failed: the next collective throws at once.
    const auto again = Clock::now();
    EXPECT_THROW((*comm)->barrier(), CommError);
    EXPECT_LT(Clock::now() - again, milliseconds(1000));
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0, 0}));
}

TEST(GlooCommunicator, SilentPeerFailsTheCollectiveAfterTheTimeout) {
  const int port = free_port();
  const std::vector<int> codes = run_processes(all_ranks(2), [&](int rank) {
    auto comm = GlooCommunicator::connect(options_for(port, 2, rank, milliseconds(10'000)));
    ASSERT_TRUE(comm.ok()) << comm.error().message;
    (*comm)->set_timeout(milliseconds(1500));
    (*comm)->barrier();
    if (rank == 1) {
      std::this_thread::sleep_for(milliseconds(4000));  // alive, but not taking part
      EXPECT_THROW((*comm)->barrier(), CommError);      // rank 0 gave up on the group meanwhile
      return;
    }
    const auto start = Clock::now();
    try {
      (*comm)->all_gather_value(7);
      ADD_FAILURE() << "all_gather_value succeeded without rank 1";
    } catch (const CommError& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("all_gather_value: receiving from rank 1 (127.0.0.1)"), std::string::npos) << message;
      EXPECT_NE(message.find("Timed out"), std::string::npos) << message;
    }
    const auto elapsed = Clock::now() - start;
    EXPECT_GE(elapsed, milliseconds(1400));
    EXPECT_LT(elapsed, milliseconds(3500));
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

TEST(GlooCommunicator, GroupsShareOneStoreUnderTheirPrefixes) {
  // Processes 0, 1, 2; group "a" = processes {0, 1}, group "b" = processes {1, 2}; process 0
  // hosts the store.
  const int port = free_port();
  const std::vector<int> codes = run_processes(all_ranks(3), [&](int process) {
    auto store = TcpStore::connect(
        {.address = "127.0.0.1", .port = port, .host = process == 0, .timeout = milliseconds(20'000)});
    ASSERT_TRUE(store.ok()) << store.error().message;
    std::unique_ptr<GlooCommunicator> a, b;
    if (process <= 1) {
      GlooOptions options = options_for(port, 2, process);
      options.prefix = "a";
      auto comm = GlooCommunicator::connect(options, *store);
      ASSERT_TRUE(comm.ok()) << comm.error().message;
      a = std::move(comm).value();
    }
    if (process >= 1) {
      GlooOptions options = options_for(port, 2, process - 1);
      options.prefix = "b";
      auto comm = GlooCommunicator::connect(options, *store);
      ASSERT_TRUE(comm.ok()) << comm.error().message;
      b = std::move(comm).value();
    }
    if (a) {
      EXPECT_EQ(a->all_gather_value(10 + process), (std::vector<int64_t>{10, 11}));
    }
    if (b) {
      EXPECT_EQ(b->all_gather_value(20 + process), (std::vector<int64_t>{21, 22}));
    }
    if (a) a->barrier();  // process 0 keeps the store up until process 1 is past its rendezvous
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0, 0}));
}

TEST(TcpStore, SetGetWaitAndTimeouts) {
  const int port = free_port();
  auto host = TcpStore::connect({.address = "127.0.0.1", .port = port, .host = true, .timeout = milliseconds(500)});
  ASSERT_TRUE(host.ok()) << host.error().message;
  auto client = TcpStore::connect({.address = "127.0.0.1", .port = port, .host = false, .timeout = milliseconds(500)});
  ASSERT_TRUE(client.ok()) << client.error().message;
  EXPECT_EQ((*client)->local_address(), "127.0.0.1");
  EXPECT_EQ((*client)->endpoint(), "127.0.0.1:" + std::to_string(port));

  EXPECT_FALSE((*client)->check("k"));
  (*host)->set("k", {'v', '1'});
  EXPECT_TRUE((*client)->check("k"));
  EXPECT_EQ((*client)->get("k"), (std::vector<char>{'v', '1'}));
  (*client)->set("k", {});  // replaced by an empty value
  EXPECT_EQ((*host)->get("k"), std::vector<char>{});
  std::vector<char> big(3 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31);
  (*client)->set("big", big);
  EXPECT_EQ((*host)->get("big"), big);

  // get and wait block until another thread sets the key.
  std::thread setter([&] {
    std::this_thread::sleep_for(milliseconds(100));
    (*host)->set("late", {'x'});
  });
  EXPECT_EQ((*client)->get("late"), std::vector<char>{'x'});
  setter.join();
  (*client)->wait({"k", "late"}, milliseconds(100));

  // A key nobody sets: an error naming it after the timeout.
  const auto start = Clock::now();
  try {
    (*client)->wait({"k", "never"}, milliseconds(300));
    ADD_FAILURE() << "wait returned for a key nobody set";
  } catch (const CommError& error) {
    EXPECT_NE(std::string(error.what()).find("key 'never' not set within 300 ms"), std::string::npos) << error.what();
  }
  EXPECT_GE(Clock::now() - start, milliseconds(290));
  EXPECT_THROW((*client)->get("never"), CommError);

  // The host going away fails the client's next request instead of hanging it.
  host.value().reset();
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_THROW((*client)->check("k"), CommError);
}

TEST(TcpStore, HostPortInUseIsAnError) {
  const int port = free_port();
  auto first = TcpStore::connect({.address = "127.0.0.1", .port = port, .host = true, .timeout = milliseconds(500)});
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = TcpStore::connect({.address = "127.0.0.1", .port = port, .host = true, .timeout = milliseconds(500)});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << second.error().message;
}

}  // namespace
}  // namespace moeserve

#include "comm/gloo/gloo_communicator.h"

#include <signal.h>

#include <cstring>
#include <numeric>
#include <thread>

#include <fmt/ranges.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

#include "base/check.h"

namespace moeserve {
namespace {

using Clock = std::chrono::steady_clock;

// Slots (gloo's message tags) of this communicator's exchanges: a fixed top byte, then a
// counter that every rank advances in step (each calls the same collectives in the same order).
constexpr uint64_t kSlotBase = uint64_t{0x6d} << 56;

std::chrono::milliseconds remaining(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(std::chrono::milliseconds(1), left);  // gloo reads 0 as "no timeout"
}

// gloo writes to its sockets with writev, which raises SIGPIPE when the peer has gone; with the
// default action that would kill this process instead of failing the collective.
void ignore_sigpipe() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, nullptr);
  }
}

int64_t rows_of(const TensorView& view) { return view.shape.rank() == 0 ? 1 : view.dim(0); }

size_t row_bytes_of(const TensorView& a, const TensorView& b) {
  MS_CHECK(a.dtype == b.dtype && a.row_size() == b.row_size());
  return static_cast<size_t>(a.row_size()) * dtype_size(a.dtype);
}

const char* at_row(const TensorView& view, int64_t row, size_t row_bytes) {
  return static_cast<const char*>(view.data) + row * row_bytes;
}

}  // namespace

Result<std::unique_ptr<GlooCommunicator>> GlooCommunicator::connect(const GlooOptions& options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return make_error("gloo: rank {} is not in a group of {}", options.rank, options.world_size);
  }
  auto store = TcpStore::connect(
      {.address = options.address, .port = options.port, .host = options.rank == 0, .timeout = options.timeout});
  if (!store.ok()) {
    return store.error().with_context(
        fmt::format("gloo group '{}' rank {} of {}", options.prefix, options.rank, options.world_size));
  }
  return connect(options, std::move(store).value());
}

Result<std::unique_ptr<GlooCommunicator>> GlooCommunicator::connect(const GlooOptions& options,
                                                                    std::shared_ptr<TcpStore> store) {
  const int size = options.world_size;
  const int rank = options.rank;
  if (size < 1 || rank < 0 || rank >= size) return make_error("gloo: rank {} is not in a group of {}", rank, size);
  if (options.prefix.empty()) return make_error("gloo: the group prefix must not be empty");
  ignore_sigpipe();

  auto comm = std::unique_ptr<GlooCommunicator>(new GlooCommunicator());
  comm->rank_ = rank;
  comm->size_ = size;
  comm->prefix_ = options.prefix;
  comm->endpoint_ = store->endpoint();
  comm->timeout_ = options.timeout;
  comm->store_ = store;
  comm->addresses_.resize(size);
  const std::string local = options.local_address.empty() ? store->local_address() : options.local_address;
  const std::string where =
      fmt::format("gloo group '{}' rank {} of {} (store {})", options.prefix, rank, size, store->endpoint());
  const auto deadline = Clock::now() + options.timeout;

  // Arrival: every rank publishes its address under <prefix>/arrived/<rank>, then waits for
  // everyone else's, so that a rank that never comes is named in the error.
  std::vector<int> missing(size);
  std::iota(missing.begin(), missing.end(), 0);
  auto ranks_text = [&] { return fmt::format("rank{} {}", missing.size() > 1 ? "s" : "", fmt::join(missing, ", ")); };
  try {
    store->set(fmt::format("{}/arrived/{}", options.prefix, rank), std::vector<char>(local.begin(), local.end()));
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      std::vector<int> still_missing;
      for (int r : missing) {
        const std::string key = fmt::format("{}/arrived/{}", options.prefix, r);
        if (store->check(key)) {
          const std::vector<char> value = store->get(key);
          comm->addresses_[r].assign(value.begin(), value.end());
        } else {
          still_missing.push_back(r);
        }
      }
      missing = std::move(still_missing);
      if (missing.empty()) break;
      if (Clock::now() >= deadline) {
        return make_error("{}: {} did not join within {} ms", where, ranks_text(), options.timeout.count());
      }
      std::this_thread::sleep_for(std::min(pause, remaining(deadline)));
      pause = std::min(pause * 2, std::chrono::milliseconds(100));
    }
  } catch (const std::exception& error) {
    // Typically the store's host (rank 0) has gone, having given up first.
    return make_error("{}: waiting for {} to join: {}", where, ranks_text(), error.what());
  }
  if (size == 1) return comm;

  // The full mesh of TCP pairs: gloo publishes each pair's listening address under
  // <prefix>/<rank> and connects to the peers', bounded by the context's timeout.
  try {
    gloo::transport::tcp::attr attr(local.c_str());
    auto device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    context->setTimeout(remaining(deadline));
    gloo::rendezvous::PrefixStore prefixed(options.prefix, *store);
    context->connectFullMesh(prefixed, device);
    context->setTimeout(options.timeout);
    comm->context_ = std::move(context);
  } catch (const std::exception& error) {
    return make_error("{}: connecting to the other ranks from {}: {}", where, local, error.what());
  }
  return comm;
}

GlooCommunicator::~GlooCommunicator() = default;

void GlooCommunicator::fail(const char* operation, const std::string& why) {
  if (broken_.empty()) broken_ = fmt::format("{}: {}", operation, why);
  throw CommError(fmt::format("gloo group '{}' rank {} of {}: {}: {}", prefix_, rank_, size_, operation, why));
}

void GlooCommunicator::exchange(const char* operation, const std::vector<Bytes>& send, const std::vector<Bytes>& recv) {
  if (!broken_.empty()) fail(operation, "the group failed earlier (" + broken_ + ")");
  if (size_ == 1) return;
  MS_CHECK(static_cast<int>(send.size()) == size_ && static_cast<int>(recv.size()) == size_);
  const uint64_t slot = kSlotBase | next_slot_++;
  const auto deadline = Clock::now() + timeout_;
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> recv_buffers(size_);
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> send_buffers(size_);
  const char* stage = "posting a receive from";
  int peer = -1;
  try {
    // Post every receive, then every send (gloo moves a message once its receive is posted),
    // then wait: receives from each peer, then the sends (their buffers belong to the caller).
    for (int step = 1; step < size_; ++step) {
      peer = (rank_ + size_ - step) % size_;
      void* data = recv[peer].bytes > 0 ? const_cast<void*>(recv[peer].data) : &dummy_;
      recv_buffers[peer] = context_->createUnboundBuffer(data, recv[peer].bytes);
      recv_buffers[peer]->recv(peer, slot, 0, recv[peer].bytes);
    }
    stage = "posting a send to";
    for (int step = 1; step < size_; ++step) {
      peer = (rank_ + step) % size_;
      void* data = send[peer].bytes > 0 ? const_cast<void*>(send[peer].data) : &dummy_;
      send_buffers[peer] = context_->createUnboundBuffer(data, send[peer].bytes);
      send_buffers[peer]->send(peer, slot, 0, send[peer].bytes);
    }
    stage = "receiving from";
    for (int step = 1; step < size_; ++step) {
      peer = (rank_ + size_ - step) % size_;
      if (!recv_buffers[peer]->waitRecv(remaining(deadline))) throw std::runtime_error("receive aborted");
    }
    stage = "sending to";
    for (int step = 1; step < size_; ++step) {
      peer = (rank_ + step) % size_;
      if (!send_buffers[peer]->waitSend(remaining(deadline))) throw std::runtime_error("send aborted");
    }
  } catch (const std::exception& error) {
    fail(operation, fmt::format("{} rank {} ({}): {}", stage, peer, addresses_[peer], error.what()));
  }
}

void GlooCommunicator::all_reduce_sum(const TensorView& buf) {
  MS_CHECK(buf.dtype == DType::kF32);
  if (size_ == 1) return;
  const int64_t count = buf.numel();
  float* data = buf.as<float>();
  auto begin = [&](int owner) { return count * owner / size_; };
  const int64_t mine = begin(rank_ + 1) - begin(rank_);
  // Round 1: everyone's copy of my chunk into scratch_[s·mine …] (s ≠ rank).
  scratch_.resize(static_cast<size_t>(size_ * mine));
  std::vector<Bytes> send(size_), recv(size_);
  for (int r = 0; r < size_; ++r) {
    send[r] = {data + begin(r), static_cast<size_t>(begin(r + 1) - begin(r)) * sizeof(float)};
    recv[r] = {scratch_.data() + r * mine, static_cast<size_t>(mine) * sizeof(float)};
  }
  exchange("all_reduce_sum", send, recv);
  // My chunk = Σ_s part_s in rank order; part_rank is still in buf.
  std::copy(data + begin(rank_), data + begin(rank_ + 1), scratch_.data() + rank_ * mine);
  float* out = data + begin(rank_);
  std::copy(scratch_.data(), scratch_.data() + mine, out);
  for (int s = 1; s < size_; ++s) {
    const float* part = scratch_.data() + s * mine;
    for (int64_t i = 0; i < mine; ++i) out[i] += part[i];
  }
  // Round 2: my reduced chunk to everyone; chunk r from its owner r.
  for (int r = 0; r < size_; ++r) {
    send[r] = {out, static_cast<size_t>(mine) * sizeof(float)};
    recv[r] = {data + begin(r), static_cast<size_t>(begin(r + 1) - begin(r)) * sizeof(float)};
  }
  exchange("all_reduce_sum", send, recv);
}

void GlooCommunicator::all_gather_rows(const TensorView& in, std::span<const int64_t> rows_per_rank,
                                       const TensorView& out) {
  const size_t row_bytes = row_bytes_of(in, out);
  MS_CHECK(static_cast<int>(rows_per_rank.size()) == size_ && rows_per_rank[rank_] == rows_of(in));
  std::vector<Bytes> send(size_), recv(size_);
  int64_t offset = 0;
  for (int r = 0; r < size_; ++r) {
    send[r] = {in.data, static_cast<size_t>(rows_of(in)) * row_bytes};
    recv[r] = {at_row(out, offset, row_bytes), static_cast<size_t>(rows_per_rank[r]) * row_bytes};
    offset += rows_per_rank[r];
  }
  MS_CHECK(offset == rows_of(out));
  if (recv[rank_].bytes > 0) std::memcpy(const_cast<void*>(recv[rank_].data), in.data, recv[rank_].bytes);
  exchange("all_gather_rows", send, recv);
}

void GlooCommunicator::reduce_scatter_sum(const TensorView& in, std::span<const int64_t> rows_per_rank,
                                          const TensorView& out) {
  MS_CHECK(in.dtype == DType::kF32 && out.dtype == DType::kF32);
  MS_CHECK(static_cast<int>(rows_per_rank.size()) == size_ && rows_per_rank[rank_] == rows_of(out));
  const int64_t width = out.row_size();
  MS_CHECK(in.row_size() == width);
  MS_CHECK(rows_of(in) == std::accumulate(rows_per_rank.begin(), rows_per_rank.end(), int64_t{0}));
  const int64_t count = rows_of(out) * width;
  // Rows of owner r start at first[r]; to r goes in[first[r] …], from s comes into
  // scratch_[s·count …] s's copy of my rows.
  std::vector<int64_t> first(size_ + 1, 0);
  for (int r = 0; r < size_; ++r) first[r + 1] = first[r] + rows_per_rank[r];
  const float* in_data = in.as<float>();
  scratch_.resize(static_cast<size_t>(size_ * count));
  std::vector<Bytes> send(size_), recv(size_);
  for (int r = 0; r < size_; ++r) {
    send[r] = {in_data + first[r] * width, static_cast<size_t>(rows_per_rank[r] * width) * sizeof(float)};
    recv[r] = {scratch_.data() + r * count, static_cast<size_t>(count) * sizeof(float)};
  }
  exchange("reduce_scatter_sum", send, recv);
  float* dst = out.as<float>();
  for (int s = 0; s < size_; ++s) {
    const float* part = s == rank_ ? in_data + first[rank_] * width : scratch_.data() + s * count;
    if (s == 0) {
      if (count > 0) std::memcpy(dst, part, count * sizeof(float));
    } else {
      for (int64_t i = 0; i < count; ++i) dst[i] += part[i];
    }
  }
}

std::vector<int64_t> GlooCommunicator::all_to_all_counts(std::span<const int64_t> send_rows) {
  MS_CHECK(static_cast<int>(send_rows.size()) == size_);
  std::vector<int64_t> recv_rows(size_);
  std::vector<Bytes> send(size_), recv(size_);
  for (int r = 0; r < size_; ++r) {
    send[r] = {&send_rows[r], sizeof(int64_t)};
    recv[r] = {&recv_rows[r], sizeof(int64_t)};
  }
  recv_rows[rank_] = send_rows[rank_];
  exchange("all_to_all_counts", send, recv);
  return recv_rows;
}

void GlooCommunicator::all_to_all_rows(const TensorView& send_view, std::span<const int64_t> send_rows,
                                       const TensorView& recv_view, std::span<const int64_t> recv_rows) {
  const size_t row_bytes = row_bytes_of(send_view, recv_view);
  MS_CHECK(static_cast<int>(send_rows.size()) == size_ && static_cast<int>(recv_rows.size()) == size_);
  MS_CHECK(send_rows[rank_] == recv_rows[rank_]);
  std::vector<Bytes> send(size_), recv(size_);
  int64_t send_offset = 0, recv_offset = 0;
  for (int r = 0; r < size_; ++r) {
    send[r] = {at_row(send_view, send_offset, row_bytes), static_cast<size_t>(send_rows[r]) * row_bytes};
    recv[r] = {at_row(recv_view, recv_offset, row_bytes), static_cast<size_t>(recv_rows[r]) * row_bytes};
    send_offset += send_rows[r];
    recv_offset += recv_rows[r];
  }
  MS_CHECK(send_offset == rows_of(send_view) && recv_offset == rows_of(recv_view));
  if (recv[rank_].bytes > 0) std::memcpy(const_cast<void*>(recv[rank_].data), send[rank_].data, recv[rank_].bytes);
  exchange("all_to_all_rows", send, recv);
}

std::vector<int64_t> GlooCommunicator::all_gather_value(int64_t value) {
  std::vector<int64_t> values(size_);
  values[rank_] = value;
  std::vector<Bytes> send(size_), recv(size_);
  for (int r = 0; r < size_; ++r) {
    send[r] = {&value, sizeof(int64_t)};
    recv[r] = {&values[r], sizeof(int64_t)};
  }
  exchange("all_gather_value", send, recv);
  return values;
}

void GlooCommunicator::barrier() {
  // An empty message to and from every rank: none is sent before its sender has entered.
  std::vector<Bytes> none(size_, Bytes{nullptr, 0});
  exchange("barrier", none, none);
}

}  // namespace moeserve

// The control plane's messages between the engine and its rank workers
// (--distributed-executor-backend mp), one ZeroMQ message each, in a compact binary encoding of
// this host's integers and floats (the engine and its workers are one binary on one host). The
// first byte names the message:
//   engine → worker   'S' step: the worker's replica's batch (encode_batch)
//                     'P' placement: EPLB's new phys2log per MoE layer
//                     'Q' quit
//   worker → engine   'R' ready: u64 KV bytes of the rank
//                     'D' step done: from a replica's TP rank 0, its logits then its expert load
//                         (counts, slot_counts); other ranks send 'D' alone
//                     'K' placement applied
//                     'E' failed: the reason, as text (the worker exits after sending it)
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "runtime/runner_seq.h"

namespace moeserve::mp {

// Appends plain values and arrays to a byte buffer.
class Writer {
 public:
  explicit Writer(char tag) { bytes_.push_back(tag); }
  template <typename T>
  void put(T value) {
    append(&value, sizeof value);
  }
  template <typename T>
  void put_array(std::span<const T> values) {
    put<uint64_t>(values.size());
    append(values.data(), values.size_bytes());
  }
  void append(const void* data, size_t size) {
    const size_t at = bytes_.size();
    bytes_.resize(at + size);
    if (size > 0) std::memcpy(bytes_.data() + at, data, size);
  }
  std::vector<char>& bytes() { return bytes_; }

 private:
  std::vector<char> bytes_;
};

// Reads them back; a short or malformed message throws std::runtime_error.
class Reader {
 public:
  Reader(const void* data, size_t size) : data_(static_cast<const char*>(data)), size_(size) {}
  template <typename T>
  T get() {
    T value;
    take(&value, sizeof value);
    return value;
  }
  template <typename T>
  std::vector<T> get_array() {
    const uint64_t n = get<uint64_t>();
    if (n > (size_ - at_) / sizeof(T)) throw std::runtime_error("control message: array past its end");
    std::vector<T> values(n);
    take(values.data(), n * sizeof(T));
    return values;
  }
  void take(void* out, size_t size) {
    if (size > size_ - at_) throw std::runtime_error("control message: shorter than its contents");
    if (size > 0) std::memcpy(out, data_ + at_, size);
    at_ += size;
  }
  size_t left() const { return size_ - at_; }

 private:
  const char* data_;
  size_t size_;
  size_t at_ = 0;
};

// A decoded batch: owns the token and block arrays its RunnerSeqs view.
struct Batch {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<int32_t>> blocks;
  std::vector<RunnerSeq> seqs;
};

// Per sequence: tokens (the first num_computed + num_new are all a rank reads), num_computed,
// num_new, samples, all_logits, block table. The token choice stays with the engine (it picks).
inline void encode_batch(Writer& out, std::span<const RunnerSeq> seqs) {
  out.put<uint32_t>(static_cast<uint32_t>(seqs.size()));
  for (const RunnerSeq& seq : seqs) {
    const size_t used = std::min(seq.tokens.size(), static_cast<size_t>(seq.num_computed + seq.num_new));
    out.put_array<int32_t>(seq.tokens.subspan(0, used));
    out.put<int32_t>(seq.num_computed);
    out.put<int32_t>(seq.num_new);
    out.put<uint8_t>(seq.samples);
    out.put<uint8_t>(seq.all_logits);
    out.put_array<int32_t>(seq.block_table);
  }
}

inline void decode_batch(Reader& in, Batch& batch) {
  const uint32_t n = in.get<uint32_t>();
  batch.tokens.resize(n);
  batch.blocks.resize(n);
  batch.seqs.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    batch.tokens[i] = in.get_array<int32_t>();
    RunnerSeq& seq = batch.seqs[i];
    seq = RunnerSeq{};
    seq.num_computed = in.get<int32_t>();
    seq.num_new = in.get<int32_t>();
    seq.samples = in.get<uint8_t>() != 0;
    seq.all_logits = in.get<uint8_t>() != 0;
    batch.blocks[i] = in.get_array<int32_t>();
    seq.tokens = batch.tokens[i];
    seq.block_table = batch.blocks[i];
  }
}

}  // namespace moeserve::mp

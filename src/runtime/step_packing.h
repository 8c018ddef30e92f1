// Packing a step's pieces (one sequence's new rows each) into the int32 words a StepInputs
// (model/step_model.h) points into, for any backend: the host builds the words, the backend
// copies them to its memory (the CPU reads them in place) and points a StepInputs at them.
//
// Layout: ids | positions | table_offsets | slots | logit rows | query tiles | block tables.
// Every offset but the tables' length depends only on (tokens, logit rows, tiles), which a
// decode step's batch size fixes: what lets a captured CUDA graph read the next step's words.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/step_model.h"

namespace moeserve {

struct StepPieceSource {
  std::span<const int32_t> tokens;       // the sequence's tokens so far (at least begin + count)
  std::span<const int32_t> block_table;  // its KV blocks (at least ceil((begin + count) / block_size))
  int begin = 0;                         // first new row's position
  int count = 0;
  bool logits_all = false;
  bool logits_last = false;
  int logit_rows() const { return logits_all ? count : (logits_last ? 1 : 0); }
};

// The StepInputs of a step of (tokens, logit rows, query tiles) whose words are at base.
StepInputs step_inputs_at(const int32_t* base, int tokens, int logit_rows, int tiles, int tile_rows);

struct PackedStep {
  std::vector<int32_t> words;
  std::vector<StepPiece> pieces;
  int tokens = 0;
  int logit_rows = 0;
  int tiles = 0;
  int tile_rows = 1;
  // The StepInputs over `base`, a copy of `words` wherever the backend keeps it.
  StepInputs inputs_at(const int32_t* base) const;
};

// tile_rows: the query tile the backend's prefill attention takes (1 when it takes none).
// Checks (MS_CHECK) that every id is below vocab and every block below num_blocks.
PackedStep pack_step(std::span<const StepPieceSource> pieces, int block_size, int tile_rows, int vocab,
                     int num_blocks);

}  // namespace moeserve

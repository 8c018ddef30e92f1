#include "runtime/step_packing.h"

#include <algorithm>

#include "base/check.h"

namespace moeserve {

PackedStep pack_step(std::span<const StepPieceSource> pieces, int bs, int tile_rows, int vocab, int num_blocks) {
  PackedStep out;
  out.tile_rows = tile_rows;
  int table_entries = 0;
  for (const StepPieceSource& p : pieces) {
    out.tokens += p.count;
    out.tiles += (p.count + tile_rows - 1) / tile_rows;
    out.logit_rows += p.logit_rows();
    table_entries += (p.begin + p.count + bs - 1) / bs;
  }
  const int tokens = out.tokens;
  out.words.assign(size_t(4) * tokens + out.logit_rows + 2 * size_t(out.tiles) + table_entries, 0);
  int32_t* ids = out.words.data();
  int32_t* positions = ids + tokens;
  int32_t* table_offsets = positions + tokens;
  int32_t* slots = table_offsets + tokens;
  int32_t* logit_ids = slots + tokens;
  int32_t* query_tiles = logit_ids + out.logit_rows;
  int32_t* tables = query_tiles + 2 * out.tiles;
  int row = 0, logit = 0, table = 0, tile = 0;
  for (const StepPieceSource& p : pieces) {
    out.pieces.push_back(StepPiece{.first_row = row, .count = p.count, .begin = p.begin, .table_offset = table});
    for (int first = 0; first < p.count; first += tile_rows, ++tile) {
      query_tiles[2 * tile] = row + first;
      query_tiles[2 * tile + 1] = std::min(tile_rows, p.count - first);
    }
    const int blocks = (p.begin + p.count + bs - 1) / bs;
    MS_CHECK(static_cast<int>(p.block_table.size()) >= blocks);
    MS_CHECK(static_cast<int>(p.tokens.size()) >= p.begin + p.count);
    std::copy_n(p.block_table.data(), blocks, tables + table);
    for (int i = 0; i < p.count; ++i, ++row) {
      const int position = p.begin + i;
      ids[row] = p.tokens[position];
      MS_CHECK(ids[row] >= 0 && ids[row] < vocab);
      positions[row] = position;
      table_offsets[row] = table;
      const int32_t block = p.block_table[position / bs];
      MS_CHECK(block >= 0 && block < num_blocks);
      slots[row] = block * bs + position % bs;
      if (p.logits_all || (p.logits_last && i + 1 == p.count)) logit_ids[logit++] = row;
    }
    table += blocks;
  }
  return out;
}

StepInputs step_inputs_at(const int32_t* base, int tokens, int logit_rows, int tiles, int tile_rows) {
  StepInputs in;
  in.tokens = tokens;
  in.token_ids = base;
  in.positions = base + tokens;
  in.table_offsets = base + 2 * tokens;
  in.slots = base + 3 * tokens;
  in.logit_rows = logit_rows;
  in.logit_row_ids = base + 4 * tokens;
  in.num_query_tiles = tiles;
  in.query_tile_rows = tile_rows;
  in.query_tiles = in.logit_row_ids + logit_rows;
  in.block_tables = in.query_tiles + 2 * tiles;
  return in;
}

StepInputs PackedStep::inputs_at(const int32_t* base) const {
  StepInputs in = step_inputs_at(base, tokens, logit_rows, tiles, tile_rows);
  in.pieces = pieces;
  return in;
}

}  // namespace moeserve

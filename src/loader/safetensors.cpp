#include "loader/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

namespace moeserve {
namespace {

constexpr size_t kMaxHeaderBytes = 100u << 20;  // the format's own limit is 100 MB

using Json = nlohmann::json;

Result<SafetensorsEntry> parse_entry(const std::string& name, const Json& value, size_t data_size) {
  if (!value.is_object()) return make_error("tensor '{}': header entry is not an object", name);
  const auto dtype_it = value.find("dtype");
  if (dtype_it == value.end() || !dtype_it->is_string()) {
    return make_error("tensor '{}': missing or non-string 'dtype'", name);
  }
  const auto dtype = parse_dtype(dtype_it->get<std::string>());
  if (!dtype) {
    return make_error("tensor '{}': unsupported dtype '{}' (supported: F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL)",
                      name, dtype_it->get<std::string>());
  }
  const auto shape_it = value.find("shape");
  if (shape_it == value.end() || !shape_it->is_array() || shape_it->size() > Shape::kMaxRank) {
    return make_error("tensor '{}': 'shape' must be an array of at most {} dims", name, Shape::kMaxRank);
  }
  std::vector<int64_t> dims;
  uint64_t numel = 1;
  for (const Json& dim : *shape_it) {
    if (!dim.is_number_unsigned()) return make_error("tensor '{}': shape has a non-integer or negative dim", name);
    const uint64_t extent = dim.get<uint64_t>();
    if (extent != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / extent) {
      return make_error("tensor '{}': shape {} overflows", name, shape_it->dump());
    }
    numel *= extent;
    dims.push_back(static_cast<int64_t>(extent));
  }
  const auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
    return make_error("tensor '{}': 'data_offsets' must be two non-negative integers", name);
  }
  const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
  const uint64_t end = (*offsets_it)[1].get<uint64_t>();
  if (begin > end || end > data_size) {
    return make_error("tensor '{}': data_offsets [{}, {}] outside the data section of {} bytes", name, begin,
                      end, data_size);
  }
  const uint64_t expected_bytes = numel * dtype_size(*dtype);
  if (end - begin != expected_bytes) {
    return make_error("tensor '{}': shape {} x {} needs {} bytes but data_offsets span {}", name,
                      shape_it->dump(), dtype_name(*dtype), expected_bytes, end - begin);
  }
  return SafetensorsEntry{*dtype, Shape::from_span(dims), static_cast<size_t>(begin), static_cast<size_t>(end)};
}

Status check_no_overlap(const std::map<std::string, SafetensorsEntry>& entries) {
  std::vector<std::pair<const std::string*, const SafetensorsEntry*>> sorted;
  for (const auto& [name, entry] : entries) {
    if (entry.end > entry.begin) sorted.emplace_back(&name, &entry);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i].second->begin < sorted[i - 1].second->end) {
      return make_error("tensors '{}' and '{}' overlap (bytes [{}, {}) and [{}, {}))", *sorted[i - 1].first,
                        *sorted[i].first, sorted[i - 1].second->begin, sorted[i - 1].second->end,
                        sorted[i].second->begin, sorted[i].second->end);
    }
  }
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  MS_ASSIGN_OR_RETURN(MappedFile file, MappedFile::open(path));
  auto fail = [&](const Error& error) { return Error{path + ": " + error.message}; };
  if (file.size() < 8) return fail(make_error("file of {} bytes is too short for a safetensors header", file.size()));
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.data(), 8);  // little-endian on every host we build for
  if (header_len > kMaxHeaderBytes || header_len > file.size() - 8) {
    return fail(make_error("header length {} exceeds the file size {} (truncated or not a safetensors file)",
                           header_len, file.size()));
  }
  const char* header_text = reinterpret_cast<const char*>(file.data()) + 8;
  Json header = Json::parse(header_text, header_text + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return fail(make_error("header is not a valid JSON object"));

  auto result = std::make_unique<SafetensorsFile>();
  result->data_start_ = 8 + header_len;
  const size_t data_size = file.size() - result->data_start_;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return fail(make_error("__metadata__ is not an object"));
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) return fail(make_error("__metadata__['{}'] is not a string", key));
        result->metadata_[key] = text.get<std::string>();
      }
      continue;
    }
    auto entry = parse_entry(name, value, data_size);
    if (!entry.ok()) return fail(entry.error());
    result->entries_.emplace(name, *entry);
  }
  if (auto status = check_no_overlap(result->entries_); !status.ok()) return fail(status.error());
  result->file_ = std::move(file);
  return result;
}

TensorView SafetensorsFile::view(const std::string& name) const {
  const auto it = entries_.find(name);
  MS_CHECK_MSG(it != entries_.end(), name.c_str());
  TensorView view;
  view.data = const_cast<std::byte*>(file_.data() + data_start_ + it->second.begin);
  view.dtype = it->second.dtype;
  view.shape = it->second.shape;
  return view;
}

Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors) {
  Json header = Json::object();
  size_t offset = 0;
  for (const NamedTensor& tensor : tensors) {
    std::vector<int64_t> dims(tensor.view.shape.dims().begin(), tensor.view.shape.dims().end());
    header[tensor.name] = {{"dtype", std::string(dtype_name(tensor.view.dtype))},
                           {"shape", dims},
                           {"data_offsets", {offset, offset + tensor.view.nbytes()}}};
    offset += tensor.view.nbytes();
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return make_error("{}: cannot open for writing", path);
  const uint64_t header_len = header_text.size();
  out.write(reinterpret_cast<const char*>(&header_len), 8);
  out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
  for (const NamedTensor& tensor : tensors) {
    out.write(static_cast<const char*>(tensor.view.data), static_cast<std::streamsize>(tensor.view.nbytes()));
  }
  if (!out) return make_error("{}: write failed", path);
  return ok_status();
}

}  // namespace moeserve

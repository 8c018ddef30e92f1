// GPU catalog entries. Memory for H100 SXM and H200 was measured on this project's device
// machines (nvidia-smi -q: FB Memory Total minus Reserved, i.e. what cudaMemGetInfo reports as
// total); the other parts use the vendor's datasheet capacity, as their sources say.
#include "plan/gpu_catalog.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace moeserve::plan {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGB = 1'000'000'000;

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return text;
}

std::vector<GpuSpec> build_catalog() {
  return {
      {"H100", {"H100-SXM", "H100-SXM5", "H100-80GB"}, "NVIDIA H100 SXM5 80 GB HBM3", (81559 - 480) * kMiB, true,
       "NVLink 4 (900 GB/s)", 900, 8,
       "measured on the device machine: nvidia-smi 'NVIDIA H100 80GB HBM3' FB total 81559 MiB, reserved 480 MiB; "
       "NVLink bandwidth from the NVIDIA H100 datasheet"},
      {"H100-PCIE", {"H100PCIE"}, "NVIDIA H100 PCIe 80 GB HBM2e", (81559 - 480) * kMiB, true, "PCIe Gen5 (128 GB/s)",
       128, 8, "NVIDIA H100 datasheet (80 GB, PCIe Gen5 128 GB/s); capacity assumed equal to the measured SXM part"},
      {"H200", {"H200-SXM", "H200-141GB"}, "NVIDIA H200 SXM 141 GB HBM3e", (143771 - 616) * kMiB, true,
       "NVLink 4 (900 GB/s)", 900, 8,
       "measured on the device machine: nvidia-smi 'NVIDIA H200' FB total 143771 MiB, reserved 616 MiB; NVLink "
       "bandwidth from the NVIDIA H200 datasheet"},
      {"B200", {"B200-SXM"}, "NVIDIA B200 180 GB HBM3e", 180 * kGB, true, "NVLink 5 (1800 GB/s)", 1800, 8,
       "NVIDIA HGX B200 datasheet: 8 GPUs with 1,440 GB HBM3e in total (180 GB each), NVLink 5 1.8 TB/s"},
      {"A100", {"A100-80GB", "A100-SXM4-80GB", "A100-80G"}, "NVIDIA A100 SXM4 80 GB HBM2e", 81920 * kMiB, false,
       "NVLink 3 (600 GB/s)", 600, 8,
       "NVIDIA A100 datasheet (80 GB HBM2e, NVLink 600 GB/s); nvidia-smi reports 81920 MiB; no FP8 tensor cores "
       "(SM80: vLLM falls back to weight-only FP8 through Marlin)"},
      {"A100-40GB", {"A100-SXM4-40GB", "A100-40G"}, "NVIDIA A100 SXM4 40 GB HBM2", 40960 * kMiB, false,
       "NVLink 3 (600 GB/s)", 600, 8, "NVIDIA A100 datasheet (40 GB HBM2, NVLink 600 GB/s); no FP8 tensor cores"},
      {"L40S", {"L40S-48GB"}, "NVIDIA L40S 48 GB GDDR6", 48 * kGB, true, "PCIe Gen4 (64 GB/s), no NVLink", 64, 8,
       "NVIDIA L40S datasheet: 48 GB GDDR6, PCIe Gen4 x16, FP8 tensor cores (Ada, SM89)"},
      {"MI300X", {"MI300X-192GB"}, "AMD Instinct MI300X 192 GB HBM3", 192 * kGB, true,
       "Infinity Fabric (896 GB/s)", 896, 8,
       "AMD Instinct MI300X datasheet: 192 GB HBM3, 7 Infinity Fabric links 896 GB/s peer, FP8 (e4m3fnuz)"},
  };
}

}  // namespace

const std::vector<GpuSpec>& gpu_catalog() {
  static const std::vector<GpuSpec> catalog = build_catalog();
  return catalog;
}

std::string GpuSet::label() const { return fmt::format("{}x{}", count, gpu->name); }

Result<const GpuSpec*> find_gpu(const std::string& name) {
  const std::string wanted = lower(name);
  std::vector<std::string> known;
  for (const GpuSpec& spec : gpu_catalog()) {
    known.push_back(spec.name);
    if (lower(spec.name) == wanted) return &spec;
    for (const std::string& alias : spec.aliases) {
      if (lower(alias) == wanted) return &spec;
    }
  }
  return make_error("unknown GPU '{}' (known: {})", name, fmt::join(known, ", "));
}

Result<GpuSet> parse_gpu_set(const std::string& text) {
  std::string spec = text;
  spec.erase(std::remove_if(spec.begin(), spec.end(), [](unsigned char ch) { return std::isspace(ch); }), spec.end());
  int count = 1;
  const size_t x = lower(spec).find('x');
  if (x != std::string::npos && x > 0 && std::all_of(spec.begin(), spec.begin() + x, ::isdigit)) {
    if (x > 6) return make_error("--gpus '{}': the GPU count is too large", text);
    count = std::stoi(spec.substr(0, x));
    spec = spec.substr(x + 1);
  }
  if (count < 1) return make_error("--gpus '{}': the GPU count must be at least 1", text);
  if (spec.empty()) return make_error("--gpus '{}': expected COUNTxGPU, e.g. 8xH200", text);
  MS_ASSIGN_OR_RETURN(const GpuSpec* gpu, find_gpu(spec));
  return GpuSet{gpu, count};
}

}  // namespace moeserve::plan

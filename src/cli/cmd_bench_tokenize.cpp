// `moeserve bench tokenize DIR [--mb N] [--iters N] [--result-file F]
// [--write-text F]`: encode throughput of DIR's tokenizer on N MB (10^6 bytes)
// of deterministic mixed text — English prose, C++/Python code, CJK, emoji
// sequences, numbers, whitespace runs — cut into documents of 1-8 KB (the size
// of real prompts) encoded one after another on one thread, as a server encodes
// requests. Reports the best of --iters timed passes (after one warm-up) as
// MB/s and tokens/s.
// --write-text saves the documents (NUL-separated) so a peer tokenizer can
// encode the same text.
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"

namespace moeserve::cli {

namespace {

struct BenchTokenizeArgs {
  std::string dir;
  double mb = 4.0;
  int iters = 3;
  std::string result_file;
  std::string write_text;
  std::string command_line; // reconstructed for the result file
};

// A small deterministic generator (splitmix64), so every run encodes the same
// text.
class Rng {
public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }

private:
  uint64_t state_;
};

void append_utf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

const std::vector<std::string> kWords = {
    "the",     "model",     "routes",     "each",    "token",
    "to",      "two",       "experts",    "and",     "weights",
    "their",   "outputs",   "by",         "router",  "probability",
    "while",   "serving",   "engine",     "batches", "requests",
    "of",      "different", "lengths",    "into",    "one",
    "step",    "Attention", "cache",      "blocks",  "are",
    "shared",  "between",   "prefixes",   "In",      "beginning",
    "God",     "created",   "heaven",     "earth",   "darkness",
    "was",     "upon",      "face",       "deep",    "don't",
    "it's",    "we'll",     "they're",    "I'm",     "throughput",
    "latency", "isn't",     "well-known", "e.g."};
const std::vector<std::string> kCode = {
    "for (int i = 0; i < n; ++i) {\n    sum += a[i] * b[i];\n}\n",
    "def encode(self, text: str) -> list[int]:\n        return "
    "self._tok.encode(text).ids\n",
    "    if (!status.ok()) return status;\n",
    "std::vector<int32_t> ids;\nids.reserve(text.size() / 3);\n",
    "import numpy as np\nx = np.zeros((4, 8), dtype=np.float32)\n",
    "\t\treturn {\"error\": msg};\n",
    "SELECT id, name FROM users WHERE age > 30 ORDER BY name;\n",
    "<div class=\"row\"><span>{{ value }}</span></div>\n"};
const std::vector<std::string> kEmoji = {
    "🚀",  "🔥",      "😀",    "👍🏽", "👨‍👩‍👧",
    "🇫🇷", "❤️", "🤖", "✨",        "🎉"};

void append_prose(std::string &out, Rng &rng) {
  const size_t words = 8 + rng.below(24);
  for (size_t i = 0; i < words; ++i) {
    if (i)
      out += rng.below(12) == 0 ? ", " : " ";
    std::string word = kWords[rng.below(kWords.size())];
    if (i == 0)
      word[0] =
          static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
    out += word;
  }
  out += rng.below(4) == 0 ? "?\n" : ". ";
}

void append_cjk(std::string &out, Rng &rng) {
  const size_t chars = 6 + rng.below(30);
  for (size_t i = 0; i < chars; ++i) {
    const size_t kind = rng.below(10);
    if (kind < 6)
      append_utf8(out, 0x4E00 + static_cast<uint32_t>(
                                    rng.below(0x5000))); // CJK ideographs
    else if (kind < 8)
      append_utf8(out,
                  0x3041 + static_cast<uint32_t>(rng.below(0x56))); // hiragana
    else if (kind < 9)
      append_utf8(out,
                  0xAC00 + static_cast<uint32_t>(rng.below(0x2BA4))); // hangul
    else
      out += "、";
  }
  out += "。";
}

void append_numbers(std::string &out, Rng &rng) {
  const size_t count = 3 + rng.below(8);
  for (size_t i = 0; i < count; ++i) {
    out += std::to_string(rng.next() % (i % 2 ? 1000000000ull : 1000ull));
    if (rng.below(3) == 0)
      out += "." + std::to_string(rng.below(100));
    out += i + 1 < count ? (rng.below(2) ? ", " : " ") : "\n";
  }
}

void append_whitespace(std::string &out, Rng &rng) {
  static const char *kRuns[] = {"    ",   "\n\n", "\t\t", "        \n",
                                " \n \n", "\r\n", "   "};
  out += kRuns[rng.below(std::size(kRuns))];
}

// Documents of 1-8 KB, `total_bytes` in all (the last one is cut at a character
// boundary).
std::vector<std::string> make_documents(size_t total_bytes) {
  Rng rng(20261201);
  std::vector<std::string> documents;
  size_t bytes = 0;
  while (bytes < total_bytes) {
    const size_t target =
        std::min<size_t>(1024 + rng.below(7 * 1024), total_bytes - bytes);
    std::string doc;
    while (doc.size() < target) {
      const size_t kind = rng.below(20);
      if (kind < 9)
        append_prose(doc, rng);
      else if (kind < 12)
        doc += kCode[rng.below(kCode.size())];
      else if (kind < 15)
        append_cjk(doc, rng);
      else if (kind < 17)
        append_numbers(doc, rng);
      else if (kind < 19)
        append_whitespace(doc, rng);
      else
        for (size_t i = 0, n = 1 + rng.below(4); i < n; ++i)
          doc += kEmoji[rng.below(kEmoji.size())];
    }
    size_t cut = target;
    while (cut > 0 && (static_cast<unsigned char>(doc[cut]) & 0xC0) == 0x80)
      --cut; // whole characters
    doc.resize(cut);
    bytes += doc.size();
    if (doc.empty())
      break;
    documents.push_back(std::move(doc));
  }
  return documents;
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0)
      return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

nlohmann::json machine() {
  utsname name{};
  uname(&name);
  double load[3] = {0, 0, 0};
  std::ifstream("/proc/loadavg") >> load[0] >> load[1] >> load[2];
  return {{"cpu", cpu_model()},
          {"hardware_threads", std::thread::hardware_concurrency()},
          {"os", std::string(name.sysname) + " " + name.release},
          {"load_average", {load[0], load[1], load[2]}}};
}

void run_bench_tokenize(const BenchTokenizeArgs &args) {
  if (args.mb <= 0 || args.iters < 1)
    fail("--mb must be positive and --iters at least 1");
  auto tokenizer = Tokenizer::from_dir(args.dir);
  if (!tokenizer.ok())
    fail(tokenizer.error().message);
  const std::vector<std::string> documents =
      make_documents(static_cast<size_t>(args.mb * 1e6));
  size_t bytes = 0;
  for (const auto &doc : documents)
    bytes += doc.size();
  if (!args.write_text.empty()) {
    std::ofstream out(args.write_text, std::ios::binary);
    for (const auto &doc : documents)
      out << doc << '\0';
    if (!out)
      fail("cannot write " + args.write_text);
  }
  using Clock = std::chrono::steady_clock;
  double best = 1e30;
  size_t tokens = 0;
  for (int iter = 0; iter <= args.iters; ++iter) { // iteration 0 warms up
    size_t count = 0;
    const auto start = Clock::now();
    for (const auto &doc : documents) {
      auto ids = (*tokenizer)->encode(doc, /*add_special_tokens=*/false);
      if (!ids.ok())
        fail(ids.error().message);
      count += ids->size();
    }
    const double seconds =
        std::chrono::duration<double>(Clock::now() - start).count();
    if (iter > 0)
      best = std::min(best, seconds);
    tokens = count;
  }
  const nlohmann::json result = {
      {"benchmark", "tokenize"},
      {"tokenizer", args.dir},
      {"implementation",
       "moeserve Tokenizer::encode (add_special_tokens=false), one thread"},
      {"bytes", bytes},
      {"documents", documents.size()},
      {"tokens", tokens},
      {"iters", args.iters},
      {"seconds", best},
      {"mb_per_s", bytes / best / 1e6},
      {"tokens_per_s", tokens / best},
      {"machine", machine()},
      {"command", args.command_line},
  };
  std::printf("%s\n", result.dump(2).c_str());
  write_result_json(args.result_file, result);
}

} // namespace

void add_bench_tokenize_command(CLI::App &bench) {
  auto args = std::make_shared<BenchTokenizeArgs>();
  CLI::App *command = bench.add_subcommand(
      "tokenize", "Encode throughput (MB/s) of a tokenizer on mixed text");
  command
      ->add_option("dir", args->dir,
                   "Model or tokenizer directory (tokenizer.json)")
      ->required();
  command
      ->add_option("--mb", args->mb, "Megabytes (10^6 bytes) of generated text")
      ->capture_default_str();
  command
      ->add_option("--iters", args->iters,
                   "Timed passes (the best is reported)")
      ->capture_default_str();
  command->add_option("--result-file", args->result_file,
                      "Also write the JSON result here");
  command->add_option("--write-text", args->write_text,
                      "Write the generated documents (NUL-separated) here");
  command->callback([args] {
    char mb[32];
    std::snprintf(mb, sizeof(mb), "%g", args->mb);
    args->command_line = "moeserve bench tokenize " + args->dir + " --mb " +
                         mb + " --iters " + std::to_string(args->iters);
    run_bench_tokenize(*args);
  });
}

} // namespace moeserve::cli

// `moeserve plan` end to end: the built binary's --json fields and numbers, the
// human report, and clear failures for unknown models and GPUs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "reference_data.h"

namespace moeserve {
namespace {

using moeserve::testing::CommandResult;
using moeserve::testing::run_moeserve;

TEST(PlanCli, DeepSeekV3JsonOn8xH200) {
  const CommandResult run = run_moeserve({"plan", "deepseek-ai/DeepSeek-V3", "--gpus", "8xH200", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json plan = nlohmann::json::parse(run.output);
  for (const char* key : {"model", "total_params", "active_params", "fits", "weights_bytes_per_gpu",
                          "kv_bytes_per_token", "max_concurrent_seqs", "recommendation", "command"}) {
    EXPECT_TRUE(plan.contains(key)) << key;
  }
  EXPECT_EQ(plan["model"], "deepseek-ai/DeepSeek-V3");
  EXPECT_EQ(plan["total_params"], 671'026'419'200);
  EXPECT_EQ(plan["kv_bytes_per_token"], 576 * 61 * 4);  // the latent, float32 (moeserve's auto cache)
  EXPECT_TRUE(plan["fits"].get<bool>());
  EXPECT_GT(plan["max_concurrent_seqs"].get<int64_t>(), 0);
  const nlohmann::json& rec = plan["recommendation"];
  EXPECT_EQ(rec["tensor_parallel_size"].get<int>() * rec["pipeline_parallel_size"].get<int>() *
                rec["data_parallel_size"].get<int>(),
            8);
  EXPECT_EQ(rec["memory"]["weights_bytes"], plan["weights_bytes_per_gpu"]);
  const std::string command = plan["command"];
  EXPECT_EQ(command.rfind("moeserve serve deepseek-ai/DeepSeek-V3 --tensor-parallel-size", 0), 0u) << command;
  EXPECT_NE(command.find("--max-model-len 163840"), std::string::npos);
}

TEST(PlanCli, NothingFitsNamesTheSmallestSet) {
  const CommandResult run =
      run_moeserve({"plan", "mistralai/Mixtral-8x7B-v0.1", "--gpus", "1xH100", "--dtype", "bfloat16"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("DOES NOT FIT"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("smallest set that fits: 2xH100 with TP=2"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("with --dtype fp8 it fits on 1xH100"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("moeserve serve mistralai/Mixtral-8x7B-v0.1 "
                            "--tensor-parallel-size 2"),
            std::string::npos);
  const CommandResult json = run_moeserve({"plan", "mistralai/Mixtral-8x7B-v0.1", "--gpus", "1xH100", "--json"});
  const nlohmann::json plan = nlohmann::json::parse(json.output);
  EXPECT_FALSE(plan["fits"].get<bool>());
  EXPECT_EQ(plan["recommendation"]["gpus"], "2xH100");
}

TEST(PlanCli, LocalCheckpointAndFp8Note) {
  const CommandResult local =
      run_moeserve({"plan", MOESERVE_MODELS_DIR "/kjv-mixtral-tiny", "--gpus", "1xL40S", "--json"});
  ASSERT_EQ(local.exit_code, 0) << local.output;
  EXPECT_EQ(nlohmann::json::parse(local.output)["total_params"], 13'622'976);
  // serve's --quantization fp8 reads as --dtype fp8; another method is refused by name.
  const CommandResult quantized =
      run_moeserve({"plan", "mistralai/Mixtral-8x7B-v0.1", "--gpus", "1xH100", "--quantization", "fp8", "--json"});
  ASSERT_EQ(quantized.exit_code, 0) << quantized.output;
  EXPECT_EQ(nlohmann::json::parse(quantized.output)["dtype"], "fp8");
  EXPECT_TRUE(nlohmann::json::parse(quantized.output)["fits"].get<bool>());
  const CommandResult awq = run_moeserve({"plan", "mistralai/Mixtral-8x7B-v0.1", "--gpus", "1xH100", "-q", "awq"});
  EXPECT_NE(awq.exit_code, 0);
  EXPECT_NE(awq.output.find("--quantization awq is not supported (supported: fp8"), std::string::npos) << awq.output;
  const CommandResult a100 = run_moeserve({"plan", "Qwen/Qwen3-30B-A3B", "--gpus", "1xA100", "--dtype", "fp8"});
  ASSERT_EQ(a100.exit_code, 0) << a100.output;
  EXPECT_NE(a100.output.find("A100 has no FP8 tensor cores"), std::string::npos) << a100.output;
  EXPECT_NE(a100.output.find("--quantization fp8"), std::string::npos) << a100.output;
}

// Every catalog family runs on CUDA (on one GPU in bf16 with an fp8 KV cache, no note; with an
// auto one, the note that CUDA stores it as float32); on several GPUs the plan says serve's CUDA
// ranks run over NCCL with their speed not measured yet; a config past a CUDA kernel's limit is
// planned, with a note saying serve needs the CPU.
TEST(PlanCli, NotesWhatTheCudaBackendDoesNotRun) {
  for (const char* id : {"openai/gpt-oss-20b", "mistralai/Mixtral-8x7B-v0.1", "Qwen/Qwen3-30B-A3B"}) {
    const CommandResult run =
        run_moeserve({"plan", id, "--gpus", "1xH200", "--dtype", "bfloat16", "--kv-cache-dtype", "fp8", "--json"});
    ASSERT_EQ(run.exit_code, 0) << run.output;
    EXPECT_TRUE(nlohmann::json::parse(run.output)["notes"].empty()) << id << ": " << run.output;
    const CommandResult automatic = run_moeserve({"plan", id, "--gpus", "1xH200", "--dtype", "bfloat16", "--json"});
    ASSERT_EQ(automatic.exit_code, 0) << automatic.output;
    const nlohmann::json notes = nlohmann::json::parse(automatic.output)["notes"];
    ASSERT_EQ(notes.size(), 1u) << id << ": " << automatic.output;
    EXPECT_NE(notes[0].get<std::string>().find("stores an auto KV cache as float32"), std::string::npos) << notes;
  }
  for (const char* id : {"openai/gpt-oss-20b", "meta-llama/Llama-4-Scout-17B-16E", "deepseek-ai/DeepSeek-V3.2"}) {
    const CommandResult run = run_moeserve({"plan", id, "--gpus", "8xH200", "--kv-cache-dtype", "fp8", "--json"});
    ASSERT_EQ(run.exit_code, 0) << run.output;
    const nlohmann::json notes = nlohmann::json::parse(run.output)["notes"];
    // (DeepSeek-V3.2's fp8 weights are held as fp8 on CUDA too: no note about their size)
    ASSERT_EQ(notes.size(), 1u) << id << ": " << run.output;
    EXPECT_NE(notes[0].get<std::string>().find("collectives over NCCL"), std::string::npos) << notes;
    EXPECT_NE(notes[0].get<std::string>().find("multi-GPU speed is not measured yet"), std::string::npos) << notes;
  }
  // DeepSeek-V3.2's shape with an index_topk past the CUDA indexer's 2048.
  const std::string dir = ::testing::TempDir() + "/plan_v32_topk";
  std::filesystem::create_directories(dir);
  nlohmann::json config =
      nlohmann::json::parse(std::ifstream(moeserve::testing::fixture_model("tiny-deepseek_v32") + "/config.json"));
  config["index_topk"] = 4096;
  std::ofstream(dir + "/config.json") << config.dump();
  const CommandResult wide =
      run_moeserve({"plan", dir + "/config.json", "--gpus", "1xH200", "--kv-cache-dtype", "fp8", "--json"});
  ASSERT_EQ(wide.exit_code, 0) << wide.output;
  const nlohmann::json notes = nlohmann::json::parse(wide.output)["notes"];
  ASSERT_EQ(notes.size(), 1u) << wide.output;
  const std::string note = notes[0].get<std::string>();
  EXPECT_NE(note.find("(no kernels for an index_topk above 2048)"), std::string::npos) << note;
  EXPECT_NE(note.find("--device cpu"), std::string::npos) << note;
}

TEST(PlanCli, ClearErrors) {
  CommandResult run = run_moeserve({"plan", "acme/Unknown-1T", "--gpus", "8xH200"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("not a local checkpoint directory, a config.json, "
                            "or a catalog model"),
            std::string::npos)
      << run.output;
  run = run_moeserve({"plan", "deepseek-ai/DeepSeek-V3", "--gpus", "8xTPUv5"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("unknown GPU 'TPUv5'"), std::string::npos) << run.output;
  run = run_moeserve({"plan", "deepseek-ai/DeepSeek-V3", "--gpus", "8xH200", "--dtype", "int3"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("--dtype 'int3' is not supported"), std::string::npos) << run.output;
  run = run_moeserve({"plan", "deepseek-ai/DeepSeek-V3", "--gpus", "8xH200", "--max-model-len", "999999"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("exceeds the model's max_position_embeddings"), std::string::npos) << run.output;
}

// --print-config writes the catalog's config.json (what the GPU sweep runs with --load-format
// dummy); without it --gpus is still required.
TEST(PlanCli, PrintConfigOfACatalogModel) {
  CommandResult run = run_moeserve({"plan", "Qwen/Qwen3-30B-A3B", "--print-config"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json config = nlohmann::json::parse(run.out);
  EXPECT_EQ(config["architectures"][0], "Qwen3MoeForCausalLM");
  EXPECT_EQ(config["num_experts"], 128);
  EXPECT_EQ(config["moe_intermediate_size"], 768);
  run = run_moeserve({"plan", "Qwen/Qwen3-30B-A3B"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("--gpus is required"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace moeserve

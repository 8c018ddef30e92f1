// How a Plan reads: a report for a person (parameters, memory per GPU, KV capacity, every layout
// considered, the winner and why, the command) and the --json document.
#include <fmt/format.h>

#include "plan/planner.h"

namespace moeserve::plan {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string billions(int64_t count) { return fmt::format("{:.2f}B", count / 1e9); }
std::string gib(int64_t bytes) { return fmt::format("{:.1f} GiB", bytes / kGiB); }

std::string layout_line(const LayoutOption& option, bool best) {
  if (!option.valid) return fmt::format("    {:<18} invalid: {}\n", option.label(), option.invalid_reason);
  const MemoryBreakdown& m = option.memory;
  return fmt::format("  {} {:<18} weights {:>9}/GPU  KV {:>11} tokens x {} replica(s)  {:>5} seqs  {}\n",
                     best ? "*" : " ", option.label(), gib(m.weights_bytes), m.kv_tokens, option.shape.data_parallel,
                     m.max_concurrent_seqs, m.fits ? "fits" : "does not fit");
}

std::string memory_lines(const LayoutOption& option) {
  const MemoryBreakdown& m = option.memory;
  std::string text;
  text += fmt::format("  usable per GPU      {} ({} x {:.2f})\n", gib(m.budget_bytes),
                      gib(option.shape.device_memory_bytes), option.shape.gpu_memory_utilization);
  text += fmt::format("  weights per GPU     {}{}\n", gib(m.weights_bytes),
                      m.mxfp4_experts ? " (routed experts MXFP4, as the CUDA runner keeps them on one GPU)" : "");
  text += fmt::format("  step arena          {} (the CUDA runner's, for {}-token steps)\n", gib(m.activation_bytes),
                      option.shape.max_num_batched_tokens);
  text += fmt::format("  CUDA runtime        {} (context, libraries, sampler)\n", gib(m.runtime_bytes));
  text += fmt::format("  comm buffers        {}\n", gib(m.comm_buffer_bytes));
  text += fmt::format("  KV cache            {}: {} blocks x {} = {} tokens ({} B/token on this GPU)\n",
                      gib(m.kv_cache_bytes), m.kv_blocks, option.shape.block_size, m.kv_tokens,
                      m.kv_bytes_per_token);
  text += fmt::format("  concurrency         {} sequences of {} tokens (max-num-seqs {}, {} replica(s))\n",
                      m.max_concurrent_seqs, m.max_model_len, option.shape.max_num_seqs, option.shape.data_parallel);
  return text;
}

nlohmann::json memory_json(const LayoutOption& option) {
  const MemoryBreakdown& m = option.memory;
  return {{"budget_bytes", m.budget_bytes},
          {"weights_bytes", m.weights_bytes},
          {"activation_bytes", m.activation_bytes},
          {"runtime_bytes", m.runtime_bytes},
          {"comm_buffer_bytes", m.comm_buffer_bytes},
          {"kv_cache_bytes", m.kv_cache_bytes},
          {"kv_bytes_per_token_per_gpu", m.kv_bytes_per_token},
          {"kv_blocks", m.kv_blocks},
          {"kv_tokens_per_replica", m.kv_tokens},
          {"fits", m.fits},
          {"verdict", m.verdict}};
}

nlohmann::json layout_json(const LayoutOption& option, const GpuSet& gpus) {
  const DeploymentShape& s = option.shape;
  nlohmann::json out = {{"gpus", gpus.label()},
                        {"layout", option.label()},
                        {"tensor_parallel_size", s.tensor_parallel},
                        {"pipeline_parallel_size", s.pipeline_parallel},
                        {"data_parallel_size", s.data_parallel},
                        {"enable_expert_parallel", s.enable_expert_parallel},
                        {"expert_parallel_size", s.expert_parallel()},
                        {"valid", option.valid}};
  if (!option.valid) {
    out["invalid_reason"] = option.invalid_reason;
    return out;
  }
  out["dtype"] = weight_dtype_name(option.memory.weight_dtype);
  out["mxfp4_experts"] = option.memory.mxfp4_experts;
  out["kv_cache_dtype"] = kv_cache_dtype_name(s.kv_cache_dtype);
  out["max_model_len"] = option.memory.max_model_len;
  out["max_num_seqs"] = s.max_num_seqs;
  out["max_num_batched_tokens"] = s.max_num_batched_tokens;
  out["gpu_memory_utilization"] = s.gpu_memory_utilization;
  out["max_concurrent_seqs"] = option.memory.max_concurrent_seqs;
  out["memory"] = memory_json(option);
  return out;
}

}  // namespace

std::string render_plan_text(const Plan& plan) {
  const LayoutOption& best = plan.layouts[plan.best];
  std::string text;
  text += fmt::format("model {} on {} ({}, {})\n", plan.model, plan.gpus.label(), plan.gpus.gpu->description,
                      plan.gpus.gpu->interconnect);
  text += fmt::format("  parameters          {} total, {} active per token ({} without the input embedding)",
                      billions(plan.params.total), billions(plan.params.active),
                      billions(plan.params.active_without_embedding()));
  if (plan.params.mtp > 0) text += fmt::format("; MTP layers {} more, not loaded", billions(plan.params.mtp));
  text += fmt::format("\n  weights             {} in {}{}\n", gib(plan.weight_bytes_total),
                      weight_dtype_name(plan.dtype),
                      plan.mxfp4_experts ? ", routed experts in MXFP4 as published" : "");
  text += fmt::format("  KV cache per token  {} bytes ({} dtype)\n", plan.kv_bytes_per_token,
                      kv_cache_dtype_name(best.shape.kv_cache_dtype));
  text += fmt::format("\nlayouts considered on {}:\n", plan.gpus.label());
  for (int index = 0; index < static_cast<int>(plan.layouts.size()); ++index) {
    text += layout_line(plan.layouts[index], index == plan.best && plan.fits);
  }
  if (plan.fits) {
    text += fmt::format("\nrecommended: {}\n", best.label());
    text += fmt::format("  why                 {}\n", plan.why);
    text += memory_lines(best);
  } else {
    text += fmt::format("\nDOES NOT FIT: {}\n", plan.why);
    if (plan.smallest_fit.has_value()) {
      text += fmt::format("smallest set that fits: {} with {}\n", plan.smallest_gpus.label(),
                          plan.smallest_fit->label());
      text += memory_lines(*plan.smallest_fit);
    } else {
      text += "no set of up to 256 of these GPUs fits\n";
    }
  }
  for (const std::string& note : plan.notes) text += fmt::format("note: {}\n", note);
  if (!plan.command.empty()) text += fmt::format("\ncommand:\n  {}\n", plan.command);
  return text;
}

nlohmann::json render_plan_json(const Plan& plan) {
  const LayoutOption& best = plan.layouts[plan.best];
  nlohmann::json out;
  out["model"] = plan.model;
  out["gpus"] = plan.gpus.label();
  out["total_params"] = plan.params.total;
  out["active_params"] = plan.params.active;
  out["active_params_without_embedding"] = plan.params.active_without_embedding();
  out["mtp_params"] = plan.params.mtp;
  out["dtype"] = weight_dtype_name(plan.dtype);
  out["weights_bytes"] = plan.weight_bytes_total;
  out["mxfp4_experts"] = plan.mxfp4_experts;
  out["fits"] = plan.fits;
  out["weights_bytes_per_gpu"] = best.memory.weights_bytes;
  out["kv_bytes_per_token"] = plan.kv_bytes_per_token;
  out["max_concurrent_seqs"] = plan.fits ? best.memory.max_concurrent_seqs : 0;
  nlohmann::json recommendation = nullptr;
  if (plan.fits) {
    recommendation = layout_json(best, plan.gpus);
  } else if (plan.smallest_fit.has_value()) {
    recommendation = layout_json(*plan.smallest_fit, plan.smallest_gpus);
  }
  if (!recommendation.is_null()) recommendation["why"] = plan.why;
  out["recommendation"] = recommendation;
  out["layouts"] = nlohmann::json::array();
  for (const LayoutOption& option : plan.layouts) out["layouts"].push_back(layout_json(option, plan.gpus));
  out["notes"] = plan.notes;
  out["command"] = plan.command.empty() ? nlohmann::json(nullptr) : nlohmann::json(plan.command);
  return out;
}

}  // namespace moeserve::plan

#include "engine/dp_coordinator.h"

namespace moeserve {

DpCoordinator::DpCoordinator(std::vector<std::unique_ptr<Engine>> engines) : engines_(std::move(engines)) {
  MS_CHECK(!engines_.empty());
}

DpCoordinator::~DpCoordinator() { stop(); }

void DpCoordinator::start() {
  for (auto& engine : engines_) engine->start();
}

void DpCoordinator::stop() {
  for (auto& engine : engines_) engine->stop();
}

int DpCoordinator::least_loaded() const {
  int best = 0, best_load = 0;
  for (int dp_rank = 0; dp_rank < num_replicas(); ++dp_rank) {
    const EngineStats stats = engines_[dp_rank]->stats();
    const int load = stats.num_running + stats.num_waiting;
    if (dp_rank == 0 || load < best_load) {
      best = dp_rank;
      best_load = load;
    }
  }
  return best;
}

Status DpCoordinator::submit(GenerationRequest request, OutputCallback on_output) {
  std::lock_guard<std::mutex> lock(mutex_);  // one placement at a time, so loads are current
  const std::string id = request.request_id;
  if (replica_of_.count(id) != 0) return make_error("request id '{}' is already in flight", id);
  const int dp_rank = least_loaded();
  auto forward = [this, id, on_output = std::move(on_output)](RequestOutput output) {
    const bool finished = output.finished;
    on_output(std::move(output));
    if (finished) {
      std::lock_guard<std::mutex> done_lock(mutex_);
      replica_of_.erase(id);
    }
  };
  replica_of_[id] = dp_rank;
  Status status = engines_[dp_rank]->submit(std::move(request), std::move(forward));
  if (!status.ok()) replica_of_.erase(id);
  return status;
}

void DpCoordinator::abort(const std::string& request_id) {
  int dp_rank = -1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = replica_of_.find(request_id);
    if (it == replica_of_.end()) return;
    dp_rank = it->second;
  }
  engines_[dp_rank]->abort(request_id);
}

EngineStats DpCoordinator::stats() const {
  EngineStats total;
  for (const auto& engine : engines_) {
    const EngineStats stats = engine->stats();
    total.num_running += stats.num_running;
    total.num_waiting += stats.num_waiting;
    total.kv_cache_usage += stats.kv_cache_usage / num_replicas();
  }
  return total;
}

}  // namespace moeserve

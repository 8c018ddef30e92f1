// What the multi-node tests (tests/e2e/multi_node_cli_test.cpp on the CPU,
// tests/gpu/cuda_multi_node_test.cpp on CUDA) share: a free port for the rendezvous, and greedy
// completions of several prompts asked concurrently, so every DP replica gets work.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_client.h"

namespace moeserve::testing {

// A TCP port of 127.0.0.1 that is free now (-1 if none could be found).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                     ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  return bound ? ntohs(addr.sin_port) : -1;
}

// The greedy completion (24 tokens) of every prompt from the server at `port`, asked
// concurrently; "HTTP <status>: <body>" for a request that failed.
inline std::vector<std::string> complete_all(int port, const std::vector<std::string>& prompts) {
  std::vector<std::future<std::string>> replies;
  for (const std::string& prompt : prompts) {
    replies.push_back(std::async(std::launch::async, [port, prompt] {
      HttpClient client(port);
      const auto result = client.request(
          "POST", "/v1/completions",
          nlohmann::json{{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}, {"ignore_eos", true}}.dump());
      if (result.status != 200) return "HTTP " + std::to_string(result.status) + ": " + result.body;
      return result.json()["choices"][0]["text"].get<std::string>();
    }));
  }
  std::vector<std::string> texts;
  for (auto& reply : replies) texts.push_back(reply.get());
  return texts;
}

}  // namespace moeserve::testing

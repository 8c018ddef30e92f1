// Downloading a Hugging Face hub model into the local cache (libcurl), as huggingface_hub's
// snapshot_download would, so `moeserve serve ORG/NAME` works on a machine that has never seen
// the model. The hub API names the revision's commit and files
// (GET {endpoint}/api/models/{id}/revision/{revision}); the files moeserve reads (config,
// generation config, tokenizer, chat template, safetensors shards and their index) are fetched
// from {endpoint}/{id}/resolve/{commit}/{file}, following redirects (LFS files live on a CDN).
// Each file is written as {file}.incomplete and renamed only once its size (and, for LFS files,
// its SHA-256) equals what the hub reported (?blobs=true), so an interrupted or corrupt download
// never leaves a file that looks whole; the next attempt resumes an .incomplete file with a Range
// request, and a corrupt one starts over. refs/{revision} is written last. On a terminal a
// progress line per file goes to stderr.
// Environment, as huggingface_hub reads it: HF_ENDPOINT (default https://huggingface.co),
// HF_TOKEN (a Bearer token for gated and private models).
#pragma once

#include <filesystem>
#include <string>

#include "base/result.h"

namespace moeserve {

// True for the files a snapshot download keeps (the rest of a repo — PyTorch .bin weights,
// original/ checkpoints, images — is never read).
bool is_served_model_file(const std::string& repo_path);

// Downloads `revision` of model `id` into `repo_dir` (<cache>/models--ORG--NAME) and returns the
// snapshot directory. Every failure names the URL and what the hub answered.
Result<std::filesystem::path> download_snapshot(const std::string& id, const std::string& revision,
                                                const std::filesystem::path& repo_dir);

}  // namespace moeserve

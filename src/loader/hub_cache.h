// Hugging Face hub ids ("deepseek-ai/DeepSeek-V3") resolved to a local snapshot directory the way
// huggingface_hub lays out its cache, so the commands in our users' documents work on a machine
// where the model is already downloaded:
//   <cache>/models--ORG--NAME/refs/<revision>  holds the commit hash of a branch or tag;
//   <cache>/models--ORG--NAME/snapshots/<commit>/  holds the files (symlinks into blobs/).
// The cache is --download-dir, else $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. A model missing from the cache is
// downloaded into it (loader/hub_download.h) unless HF_HUB_OFFLINE is set, when it is refused with
// where it was looked for.
#pragma once

#include <string>

#include "base/result.h"

namespace moeserve {

struct HubLookup {
  std::string revision = "main";  // a branch, a tag or a 40-hex commit
  std::string download_dir;       // vLLM's --download-dir: the cache to use instead of the default
};

// True for "ORG/NAME" that is not an existing path: what the hub resolution applies to.
bool looks_like_hub_id(const std::string& model);

// An existing directory or file as given; a hub id as the snapshot directory of its revision
// (downloaded first when the cache lacks it).
Result<std::string> resolve_model_path(const std::string& model, const HubLookup& lookup = {});

}  // namespace moeserve

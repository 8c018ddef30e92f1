// Peer measurement for `moeserve bench tokenize`: encodes the same NUL-separated documents
// (written by `bench tokenize --write-text`) with Hugging Face's Tokenizers.js
// (@huggingface/tokenizers, pure JavaScript) on one thread, best of N timed passes after a
// warm-up, and merges {mb_per_s, tokens_per_s, ...} into the moeserve result file as "peer",
// noting whether its token count equals moeserve's.
// Usage: node bench/tokenize_peer.mjs PACKAGE_DIR TOKENIZER_DIR TEXT_FILE RESULT_FILE ITERS
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [packageDir, tokenizerDir, textFile, resultFile, itersArg] = process.argv.slice(2);
const { Tokenizer } = await import(pathToFileURL(`${packageDir}/dist/tokenizers.mjs`).href);
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(`${tokenizerDir}/tokenizer.json`, "utf8")),
  JSON.parse(readFileSync(`${tokenizerDir}/tokenizer_config.json`, "utf8")),
);
const raw = readFileSync(textFile);
const documents = raw.toString("utf8").split("\0").filter((doc) => doc.length > 0);
const iters = Number(itersArg || 3);
let best = Infinity;
let tokens = 0;
for (let iter = 0; iter <= iters; ++iter) {
  let count = 0;
  const start = process.hrtime.bigint();
  for (const doc of documents) count += tokenizer.encode(doc, { add_special_tokens: false }).ids.length;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (iter > 0) best = Math.min(best, seconds);
  tokens = count;
}
const bytes = raw.length - documents.length; // minus the NUL separators
const result = JSON.parse(readFileSync(resultFile, "utf8"));
const pkg = JSON.parse(readFileSync(`${packageDir}/package.json`, "utf8"));
result.peer = {
  implementation: `${pkg.name}@${pkg.version} (Tokenizers.js, pure JavaScript) on Node ${process.version}, one thread`,
  bytes,
  tokens,
  same_token_count: tokens === result.tokens,
  seconds: best,
  mb_per_s: bytes / best / 1e6,
  tokens_per_s: tokens / best,
};
writeFileSync(resultFile, JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result.peer, null, 2));

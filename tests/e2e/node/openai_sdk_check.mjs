// Drives a running `moeserve serve` with the official OpenAI Node SDK, as a user's client would:
// models.list, completions and chat completions (plain and streamed, with usage), the greedy
// references of the bundled model, and the SDK's typed errors for bad requests.
// Usage: node openai_sdk_check.mjs PORT MODEL_DIR   (exits non-zero with a message on failure)
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const [port, modelDir] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });
const { samples } = JSON.parse(readFileSync(`${modelDir}/samples.json`, "utf8"));
let failures = 0;
function check(condition, what) {
  if (!condition) {
    failures += 1;
    console.error(`FAIL: ${what}`);
  }
}

const models = await client.models.list();
check(models.data.some((model) => model.id === "kjv"), `models.list has kjv: ${JSON.stringify(models.data)}`);

// vLLM returns the continuation decoded in the prompt's context (a first word keeps its leading
// space, which transformers' decode of the greedy ids alone, greedy_text, strips): the expected
// text is decode(prompt + greedy) minus decode(prompt), from the server's /detokenize, and it
// must agree with greedy_text up to leading whitespace.
async function detokenize(tokens) {
  const response = await fetch(`http://127.0.0.1:${port}/detokenize`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: "kjv", tokens }) });
  return (await response.json()).prompt;
}
for (const sample of samples) {
  const prompt = await detokenize(sample.prompt_ids);
  sample.expected = (await detokenize([...sample.prompt_ids, ...sample.greedy_ids])).slice(prompt.length);
  check(sample.expected.trimStart() === sample.greedy_text, `detokenized reference of "${sample.prompt}"`);
}
const expected = (sample) => sample.expected;
for (const sample of samples) {
  const params = { model: "kjv", prompt: sample.prompt_ids, max_tokens: sample.greedy_ids.length, temperature: 0,
                   ignore_eos: true };
  const plain = await client.completions.create(params);
  check(plain.choices[0].text === expected(sample), `completion of "${sample.prompt}": ${JSON.stringify(plain.choices[0].text)}`);
  check(plain.usage.completion_tokens === sample.greedy_ids.length, `completion usage ${JSON.stringify(plain.usage)}`);
  const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let usage = null;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) text += choice.text;
    if (chunk.usage) usage = chunk.usage;
  }
  check(text === expected(sample), `streamed completion of "${sample.prompt}": ${JSON.stringify(text)}`);
  check(usage && usage.completion_tokens === sample.greedy_ids.length, `streamed usage ${JSON.stringify(usage)}`);
}

const messages = [{ role: "user", content: "Who made the heaven and the earth?" }];
const chat = await client.chat.completions.create({ model: "kjv", messages, max_tokens: 24, temperature: 0 });
const answer = chat.choices[0].message.content;
check(chat.choices[0].message.role === "assistant" && answer.length > 0, `chat answer ${JSON.stringify(chat.choices[0])}`);
const chatStream = await client.chat.completions.create({ model: "kjv", messages, max_tokens: 24, temperature: 0,
                                                          stream: true });
let streamed = "";
for await (const chunk of chatStream) streamed += chunk.choices[0]?.delta?.content ?? "";
check(streamed === answer, `streamed chat ${JSON.stringify(streamed)} vs ${JSON.stringify(answer)}`);

async function expectError(call, status, what) {
  try {
    await call();
    check(false, `${what}: no error`);
  } catch (error) {
    check(error instanceof OpenAI.APIError && error.status === status, `${what}: ${error}`);
  }
}
await expectError(() => client.completions.create({ model: "nope", prompt: "x" }), 404, "unknown model");
await expectError(() => client.completions.create({ model: "kjv", prompt: "x", temperature: -2 }), 400, "bad temperature");
await expectError(() => client.chat.completions.create({ model: "kjv", messages: [] }), 400, "empty messages");

if (failures > 0) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
console.log("openai sdk checks passed");

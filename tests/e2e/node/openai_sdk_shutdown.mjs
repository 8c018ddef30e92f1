// The official OpenAI Node SDK while `moeserve serve` shuts down (issue 24: the SDK reported only
// "terminated"): a stream is open, the server gets SIGTERM, and the SDK must raise its typed
// APIError with the server's message instead of a bare connection failure.
// Usage: node openai_sdk_shutdown.mjs PORT SERVER_PID   (exits non-zero with a message on failure)
import OpenAI from "openai";

const [port, pid] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });
const stream = await client.completions.create({
  model: "kjv", prompt: [1, 560, 272], max_tokens: 4000, temperature: 0, ignore_eos: true, stream: true });
let chunks = 0;
let caught = null;
try {
  for await (const chunk of stream) {
    chunks += 1;
    if (chunks === 1) process.kill(Number(pid), "SIGTERM");
  }
} catch (error) {
  caught = error;
}
if (!(caught instanceof OpenAI.APIError) || !String(caught.message).includes("the server is shutting down")) {
  console.error(`FAIL: after ${chunks} chunks the SDK ended with ${caught === null ? "no error" : caught}`);
  process.exit(1);
}
console.log(`openai sdk shutdown check passed (${chunks} chunks, then: ${caught.message})`);

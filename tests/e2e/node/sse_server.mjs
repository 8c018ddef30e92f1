// A second OpenAI-style server for `moeserve bench serve` (tests/e2e/bench_serve_peer_test.cpp):
// plain Node http, so HTTP/1.1 keep-alive and chunked transfer encoding as Node sends them. Each
// completion streams max_tokens SSE events with CRLF line ends, some split across writes (and so
// across chunks), then a usage event and [DONE]. GET /stats reports the connections and
// completions seen. Prints "listening PORT" once it listens on an ephemeral port.
import http from "node:http";

let connections = 0;
let completions = 0;

const server = http.createServer((req, res) => {
  let body = "";
  req.on("data", (part) => (body += part));
  req.on("end", async () => {
    if (req.method === "GET" && req.url === "/v1/models") {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ object: "list", data: [{ id: "node-sse", object: "model" }] }));
      return;
    }
    if (req.method === "GET" && req.url === "/stats") {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ connections, completions }));
      return;
    }
    if (req.method !== "POST" || req.url !== "/v1/completions") {
      res.writeHead(404, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}`, type: "NotFoundError" } }));
      return;
    }
    const request = JSON.parse(body);
    completions += 1;
    res.writeHead(200, { "Content-Type": "text/event-stream" });  // no length: chunked
    const tick = () => new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < request.max_tokens; i += 1) {
      const event = `data: ${JSON.stringify({ choices: [{ index: 0, text: `t${i} ` }] })}\r\n\r\n`;
      if (i % 2 === 0) {
        res.write(event);
      } else {  // one event over two chunks, the cut inside its CRLF CRLF
        res.write(event.slice(0, event.length - 3));
        await tick();
        res.write(event.slice(event.length - 3));
      }
      await tick();
    }
    const usage = { prompt_tokens: request.prompt.length, completion_tokens: request.max_tokens };
    res.write(`data: ${JSON.stringify({ choices: [], usage })}\r\n\r\n`);
    res.end("data: [DONE]\r\n\r\n");
  });
});
server.on("connection", () => (connections += 1));
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));

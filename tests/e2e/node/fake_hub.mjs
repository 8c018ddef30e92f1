// A stand-in for the Hugging Face hub (tests/e2e/hub_download_test.cpp), serving one model
// directory (argv[2]) as the hub API does:
//   GET /api/models/{id}/revision/{rev} → {sha, siblings: [{rfilename}]} (README.md and
//       original/consolidated.pth listed too, as real repos have them);
//   GET /{id}/resolve/{sha}/{file} → the file; *.safetensors by a 302 to /cdn/{file}, as LFS files
//       live on a CDN.
// Models: acme/kjv-remote (public) and acme/gated (401 without "Authorization: Bearer hf_test").
// GET /stats reports the paths requested and how many CDN requests carried a token (it must not be
// forwarded off the hub). Prints "listening PORT" once it listens on an ephemeral port.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const dir = process.argv[2];
const sha = "0123456789abcdef0123456789abcdef01234567";
const models = { "acme/kjv-remote": false, "acme/gated": true }; // id → needs a token
const requested = [];
let cdnWithToken = 0;

function send(res, status, body, type = "application/json") {
  res.writeHead(status, { "Content-Type": type });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const url = decodeURIComponent(req.url);
  requested.push(url);
  if (url === "/stats") return send(res, 200, JSON.stringify({ requested, cdnWithToken }));
  if (url.startsWith("/cdn/")) {
    if (req.headers.authorization) cdnWithToken++;
    const file = path.join(dir, path.basename(url));
    return fs.existsSync(file) ? send(res, 200, fs.readFileSync(file), "application/octet-stream") : send(res, 404, "{}");
  }
  const api = url.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/);
  const resolve = url.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
  const id = api ? api[1] : resolve ? resolve[1] : null;
  if (id === null || !(id in models)) return send(res, 404, JSON.stringify({ error: "Repository not found" }));
  if (models[id] && req.headers.authorization !== "Bearer hf_test") {
    return send(res, 401, JSON.stringify({ error: "Access to model is restricted" }));
  }
  if (api) {
    if (api[2] !== "main" && api[2] !== sha) return send(res, 404, JSON.stringify({ error: "Revision not found" }));
    const siblings = fs.readdirSync(dir).map((rfilename) => ({ rfilename }));
    siblings.push({ rfilename: "README.md" }, { rfilename: "original/consolidated.pth" });
    return send(res, 200, JSON.stringify({ id, sha, siblings }));
  }
  const [, , revision, file] = resolve;
  const local = path.join(dir, file);
  if (revision !== sha || file.includes("..") || !fs.existsSync(local)) return send(res, 404, "{}");
  if (file.endsWith(".safetensors")) {
    // Another host, as the hub's LFS CDN is: a client must not send it the hub token.
    res.writeHead(302, { Location: `http://localhost:${server.address().port}/cdn/${file}` });
    return res.end();
  }
  send(res, 200, fs.readFileSync(local), "application/octet-stream");
});

server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));

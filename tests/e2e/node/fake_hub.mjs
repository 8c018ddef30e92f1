// A stand-in for the Hugging Face hub (tests/e2e/hub_download_test.cpp), serving one model
// directory (argv[2]) as the hub API does:
//   GET /api/models/{id}/revision/{rev}?blobs=true → {sha, siblings: [{rfilename, size, lfs}]}
//       (lfs: {sha256, size} for *.safetensors; README.md and original/consolidated.pth listed
//       too, as real repos have them);
//   GET /{id}/resolve/{sha}/{file} → the file; *.safetensors by a 302 to /cdn/{id}/{file} on
//       another host name, as LFS files live on a CDN, which honours Range: bytes=N-.
// Models: acme/kjv-remote (public), acme/gated (401 without "Authorization: Bearer hf_test") and
// acme/corrupt (its CDN flips one byte of every weight file).
// GET /stats reports the paths requested, the Range headers seen and how many CDN requests carried
// a token (it must not be forwarded off the hub). Prints "listening PORT" once it listens.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const dir = process.argv[2];
const sha = "0123456789abcdef0123456789abcdef01234567";
const models = { "acme/kjv-remote": false, "acme/gated": true, "acme/corrupt": false }; // id → needs a token
const requested = [];
const ranges = [];
let cdnWithToken = 0;

function send(res, status, body, type = "application/json") {
  res.writeHead(status, { "Content-Type": type });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const url = decodeURIComponent(req.url);
  requested.push(url);
  if (url === "/stats") return send(res, 200, JSON.stringify({ requested, ranges, cdnWithToken }));
  const cdn = url.match(/^\/cdn\/([^/]+\/[^/]+)\/([^/]+)$/);
  if (cdn) {
    if (req.headers.authorization) cdnWithToken++;
    const file = path.join(dir, cdn[2]);
    if (!fs.existsSync(file)) return send(res, 404, "{}");
    let bytes = fs.readFileSync(file);
    if (cdn[1] === "acme/corrupt") {
      bytes = Buffer.from(bytes);
      bytes[bytes.length >> 1] ^= 0x55;
    }
    const range = (req.headers.range || "").match(/^bytes=(\d+)-$/);
    if (req.headers.range) ranges.push(`${cdn[2]} ${req.headers.range}`);
    if (range && Number(range[1]) < bytes.length) {
      const start = Number(range[1]);
      res.writeHead(206, {
        "Content-Type": "application/octet-stream",
        "Content-Range": `bytes ${start}-${bytes.length - 1}/${bytes.length}`,
      });
      return res.end(bytes.subarray(start));
    }
    return send(res, 200, bytes, "application/octet-stream");
  }
  const api = url.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^?]+)(\?blobs=true)?$/);
  const resolve = url.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
  const id = api ? api[1] : resolve ? resolve[1] : null;
  if (id === null || !(id in models)) return send(res, 404, JSON.stringify({ error: "Repository not found" }));
  if (models[id] && req.headers.authorization !== "Bearer hf_test") {
    return send(res, 401, JSON.stringify({ error: "Access to model is restricted" }));
  }
  if (api) {
    if (api[2] !== "main" && api[2] !== sha) return send(res, 404, JSON.stringify({ error: "Revision not found" }));
    const siblings = fs.readdirSync(dir).map((rfilename) => {
      const bytes = fs.readFileSync(path.join(dir, rfilename));
      const entry = { rfilename, size: bytes.length };
      if (rfilename.endsWith(".safetensors")) {
        entry.lfs = { sha256: crypto.createHash("sha256").update(bytes).digest("hex"), size: bytes.length };
      }
      return entry;
    });
    siblings.push({ rfilename: "README.md" }, { rfilename: "original/consolidated.pth" });
    return send(res, 200, JSON.stringify({ id, sha, siblings }));
  }
  const [, , revision, file] = resolve;
  const local = path.join(dir, file);
  if (revision !== sha || file.includes("..") || !fs.existsSync(local)) return send(res, 404, "{}");
  if (file.endsWith(".safetensors")) {
    // Another host, as the hub's LFS CDN is: a client must not send it the hub token.
    res.writeHead(302, { Location: `http://localhost:${server.address().port}/cdn/${id}/${file}` });
    return res.end();
  }
  send(res, 200, fs.readFileSync(local), "application/octet-stream");
});

server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));

// Bundles the live page into one self-contained HTML file (scripts and styles inline, no
// external request), which the C++ build embeds in the binary (src/server/CMakeLists.txt).
//   node webui/build.mjs OUT.html
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error('usage: node webui/build.mjs OUT.html');
  process.exit(2);
}
if (!existsSync(join(here, 'node_modules', 'esbuild', 'package.json'))) {
  console.error("webui: esbuild is not installed in webui/node_modules: run `make webui-deps` (npm ci --prefix webui)");
  process.exit(1);
}
const esbuild = await import('esbuild');
const result = await esbuild.build({
  entryPoints: [join(here, 'src', 'main.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  write: false,
  outdir: join(here, 'out'),
  logLevel: 'warning',
  legalComments: 'eof',
});
const js = result.outputFiles.find((file) => file.path.endsWith('.js')).text;
const css = result.outputFiles.find((file) => file.path.endsWith('.css'))?.text ?? '';
const template = readFileSync(join(here, 'src', 'index.html'), 'utf8');
// Inline: a literal `</script` or `</style` inside the code would end the element early.
const html = template
  .replace('/*__STYLE__*/', () => css.replaceAll('</style', '<\\/style'))
  .replace('/*__SCRIPT__*/', () => js.replaceAll('</script', '<\\/script'));
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, html);
console.log(`webui: ${out} (${html.length} bytes)`);

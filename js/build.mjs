// Bundles src/index.js (and the CSS it imports) into ONE ES module for anywidget:
//   ../qscope_widgets/static/widget.js  +  ../qscope_widgets/static/widget.css
// No runtime dependencies, no CDN: everything the widget needs is in these two files.
import * as esbuild from "esbuild";
import { mkdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = join(here, "..", "qscope_widgets", "static");
const watch = process.argv.includes("--watch");

/** @type {import("esbuild").BuildOptions} */
const options = {
  entryPoints: { widget: join(here, "src", "index.js") },
  outdir,
  bundle: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  legalComments: "none",
  logLevel: "warning",
};

mkdirSync(outdir, { recursive: true });
if (watch) {
  const ctx = await esbuild.context({ ...options, logLevel: "info" });
  await ctx.watch();
  console.log(`watching js/src -> ${relative(process.cwd(), outdir)}`);
} else {
  const t0 = performance.now();
  await esbuild.build(options);
  const kb = (f) => (statSync(join(outdir, f)).size / 1024).toFixed(1);
  console.log(`built ${relative(process.cwd(), outdir)}/widget.js (${kb("widget.js")} KB), widget.css ` +
    `(${kb("widget.css")} KB) in ${(performance.now() - t0).toFixed(0)} ms`);
}

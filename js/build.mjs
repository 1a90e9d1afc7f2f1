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

// The static host (js/src/static-host.js: the same views over saved data, no kernel) as a classic script, so
// an exported page can inline it: `QScopeStatic.mountAll()`. Its CSS is widget.css (same import), not re-emitted.
/** @type {import("esbuild").BuildOptions} */
const staticOptions = {
  ...options,
  entryPoints: { static: join(here, "src", "static-host.js") },
  format: "iife",
  globalName: "QScopeStatic",
  footer: { js: "QScopeStatic = QScopeStatic.default || QScopeStatic;" },
  loader: { ".css": "empty" },
};

mkdirSync(outdir, { recursive: true });
if (watch) {
  const ctx = await esbuild.context({ ...options, logLevel: "info" });
  const sctx = await esbuild.context({ ...staticOptions, logLevel: "info" });
  await sctx.watch();
  await ctx.watch();
  console.log(`watching js/src -> ${relative(process.cwd(), outdir)}`);
} else {
  const t0 = performance.now();
  await esbuild.build(options);
  await esbuild.build(staticOptions);
  const kb = (f) => (statSync(join(outdir, f)).size / 1024).toFixed(1);
  console.log(`built ${relative(process.cwd(), outdir)}/widget.js (${kb("widget.js")} KB), widget.css ` +
    `(${kb("widget.css")} KB), static.js (${kb("static.js")} KB) in ${(performance.now() - t0).toFixed(0)} ms`);
}

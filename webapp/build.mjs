// Builds the technician web app into dist/ (served by Django at /app/):
//   dist/index.html, app.css, manifest.webmanifest, icon.svg  (copied)
//   dist/app.js  (src/main.ts + the client from ../clients/typescript/src)
//   dist/sw.js   (sw.ts, its cache named after a hash of the shell it caches)
// `node build.mjs --watch` rebuilds on change (without the service worker's hash).
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const STATIC = ["index.html", "app.css", "manifest.webmanifest", "icon.svg", "icon-maskable.svg"];
const watch = process.argv.includes("--watch");

const common = {
  bundle: true,
  format: "esm",
  target: ["es2022"],
  sourcemap: true,
  minify: !watch,
  legalComments: "none",
  logLevel: "info",
  // The client's own dependencies (idb) resolve from clients/typescript/node_modules
  // when installed there, else from this package's.
  nodePaths: [join(here, "node_modules")],
};

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
for (const name of STATIC) await copyFile(join(here, name), join(dist, name));

const app = { ...common, entryPoints: [join(here, "src/main.ts")], outfile: join(dist, "app.js") };
if (watch) {
  const ctx = await esbuild.context(app);
  await ctx.watch();
} else {
  await esbuild.build(app);
  // The service worker's cache is named after what it caches: a new build is a
  // new sw.js, which the browser installs, and the old cache is dropped.
  const hash = createHash("sha256");
  for (const name of ["app.js", ...STATIC]) hash.update(await readFile(join(dist, name)));
  await esbuild.build({
    ...common,
    sourcemap: false,
    format: "iife",
    entryPoints: [join(here, "sw.ts")],
    outfile: join(dist, "sw.js"),
    define: { __SHELL_VERSION__: JSON.stringify(hash.digest("hex").slice(0, 12)) },
  });
  await writeFile(join(dist, "BUILD"), `${new Date().toISOString()}\n`);
}

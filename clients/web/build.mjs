// Bundles src/ (and the generated client of ../typescript/src/gen, which
// ../typescript/generate.sh writes from ../../proto) into dist/: index.html, app.js,
// app.css. The bundle is checked in and embedded in the server binary, so it must come out
// byte for byte the same from the same sources: pinned esbuild, no timestamps, no source
// maps with absolute paths. `--check` builds into memory and fails when dist/ differs.
import { build } from "esbuild";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");

// The generated code imports @bufbuild/protobuf from its own directory; resolve every such
// import from here, so the bundle holds one copy of the runtime, the one locked here.
const oneRuntime = {
  name: "one-runtime",
  setup(b) {
    b.onResolve({ filter: /^@bufbuild\/protobuf/ }, (args) => {
      if (args.resolveDir.startsWith(here)) {
        return undefined;
      }
      return b.resolve(args.path, { kind: args.kind, resolveDir: here });
    });
  },
};

const result = await build({
  absWorkingDir: here,
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  charset: "utf8",
  write: false,
  outdir: "dist",
  plugins: [oneRuntime],
  logLevel: "warning",
});

const files = new Map(result.outputFiles.map((f) => [f.path.slice(here.length + 1), f.contents]));
files.set("dist/index.html", readFileSync(join(here, "src/index.html")));
files.set("dist/app.css", readFileSync(join(here, "src/app.css")));

let stale = [];
for (const [path, contents] of files) {
  const target = join(here, path);
  if (check) {
    let current;
    try {
      current = readFileSync(target);
    } catch {
      current = undefined;
    }
    if (!current || Buffer.compare(current, Buffer.from(contents)) !== 0) stale.push(path);
  } else {
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, contents);
  }
}
if (stale.length) {
  console.error(
    `clients/web: ${stale.join(", ")} differ from a build of the sources: run scripts/build-dashboard and commit clients/web/dist/`,
  );
  process.exit(1);
}
const size = [...files.values()].reduce((n, c) => n + c.length, 0);
console.log(`clients/web: ${check ? "dist/ matches the sources" : "built dist/"} (${files.size} files, ${size} bytes)`);

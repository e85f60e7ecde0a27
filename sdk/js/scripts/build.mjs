// Builds @palaver/client into dist/ and checks its size:
//   1. the Rust SDK for wasm32 (feature `wasm`, profile `wasm-release`: size over speed);
//   2. wasm-bindgen --target web (the CLI must be the version of the crate in Cargo.lock);
//   3. wasm-opt -Oz (npm's binaryen, a devDependency);
//   4. tsc: src/index.ts and the generated src/protocol.ts into JavaScript and .d.ts;
//   5. the budget: the WebAssembly and JavaScript a page loads, gzipped, at most 285 KiB.
//
// Needs cargo with the wasm32-unknown-unknown target, wasm-bindgen on PATH (or
// ~/.cargo/bin), and `npm ci` here. The cargo target directory is
// $PALAVER_WASM_TARGET_DIR, else target/js-wasm in the workspace.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

/** The budget for what a page downloads, gzipped. */
export const BUDGET_BYTES = 285 * 1024;

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const root = resolve(pkg, "../..");
const run = (cmd, args, options = {}) => execFileSync(cmd, args, { stdio: "inherit", ...options });

function findWasmBindgen() {
  const dirs = (process.env.PATH ?? "").split(":").concat(join(homedir(), ".cargo/bin"));
  const found = [process.env.PALAVER_WASM_BINDGEN, ...dirs.map((d) => join(d, "wasm-bindgen"))]
    .find((p) => p && existsSync(p));
  if (!found) throw new Error("wasm-bindgen not found: cargo install wasm-bindgen-cli (same version as Cargo.lock)");
  const lock = readFileSync(join(root, "Cargo.lock"), "utf8");
  const wanted = lock.match(/name = "wasm-bindgen"\nversion = "([^"]+)"/)?.[1];
  const version = execFileSync(found, ["--version"], { encoding: "utf8" }).trim();
  if (version !== `wasm-bindgen ${wanted}`) {
    throw new Error(`${found} is ${version}; the crate is ${wanted}: cargo install wasm-bindgen-cli --version ${wanted}`);
  }
  return found;
}

export function build() {
  const cargo = process.env.CARGO ?? "cargo";
  const targetDir = process.env.PALAVER_WASM_TARGET_DIR ?? join(root, "target/js-wasm");
  run(cargo, [
    "build", "-p", "palaver-sdk", "--lib", "--target", "wasm32-unknown-unknown",
    "--no-default-features", "--features", "wasm", "--profile", "wasm-release",
  ], { cwd: root, env: { ...process.env, CARGO_TARGET_DIR: targetDir } });
  const wasm = join(targetDir, "wasm32-unknown-unknown/wasm-release/palaver_sdk.wasm");

  const out = join(pkg, "build/wasm");
  rmSync(join(pkg, "build"), { recursive: true, force: true });
  rmSync(join(pkg, "dist"), { recursive: true, force: true });
  run(findWasmBindgen(), ["--target", "web", "--out-dir", out, "--out-name", "palaver", wasm]);

  // The features rustc's wasm32 target uses (and every current browser has).
  const features = ["bulk-memory", "sign-ext", "mutable-globals", "nontrapping-float-to-int", "reference-types", "multivalue"];
  const bg = join(out, "palaver_bg.wasm");
  run(join(pkg, "node_modules/.bin/wasm-opt"), ["-Oz", "--strip-debug", "--strip-producers", ...features.map((f) => `--enable-${f}`), bg, "-o", bg]);

  run(join(pkg, "node_modules/.bin/tsc"), ["-p", join(pkg, "tsconfig.json")]);
  mkdirSync(join(pkg, "dist/wasm"), { recursive: true });
  for (const file of ["palaver.js", "palaver.d.ts", "palaver_bg.wasm"]) {
    copyFileSync(join(out, file), join(pkg, "dist/wasm", file));
  }
  return checkSize();
}

/** Gzipped sizes of what a page loads; throws past the budget. */
export function checkSize() {
  const files = ["wasm/palaver_bg.wasm", "wasm/palaver.js", "index.js"];
  const sizes = Object.fromEntries(
    files.map((f) => [f, gzipSync(readFileSync(join(pkg, "dist", f)), { level: 9 }).length]),
  );
  const total = Object.values(sizes).reduce((a, b) => a + b, 0);
  const raw = readFileSync(join(pkg, "dist/wasm/palaver_bg.wasm")).length;
  console.log(`@palaver/client: ${total} bytes gzipped (budget ${BUDGET_BYTES}); wasm ${raw} bytes raw; ${JSON.stringify(sizes)}`);
  if (total > BUDGET_BYTES) {
    throw new Error(`@palaver/client is ${total} bytes gzipped, over its budget of ${BUDGET_BYTES}`);
  }
  return { total, raw, sizes };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    build();
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}

/**
 * The server trees a run measures: this checkout as it is (tracked and untracked files, the way
 * CI copies it), and the baseline commit in a git worktree under .bench/. For uWebSockets.js, which
 * needs glibc >= 2.38, a tree is copied into the Debian 13 root (.ci/trixie-root.sh) and installed
 * there with npm, as CI does.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const CHECKOUT = new URL("../../../", import.meta.url).pathname.replace(/\/$/, "");
const TRIXIE = join(CHECKOUT, ".ci/trixie-root.sh");

export interface Tree {
  /** "current" or the baseline's short commit. */
  label: string;
  /** Where its sources (and node_modules) are on the host. */
  hostDir: string;
  /** Commit and whether the working tree has changes of its own. */
  commit: string;
  dirty: boolean;
  /** Its copy inside the Debian 13 root, once prepared: the path inside the root. */
  rootDir?: string;
}

export type Log = (line: string) => void;

function git(args: string[], cwd = CHECKOUT): string {
  return execFileSync("git", args, { cwd, stdio: ["ignore", "pipe", "pipe"] }).toString().trim();
}

export function currentTree(): Tree {
  const commit = git(["rev-parse", "--short", "HEAD"]);
  const dirty = git(["status", "--porcelain", "--untracked-files=normal"]).length > 0;
  return { label: "current", hostDir: CHECKOUT, commit, dirty };
}

/** The files CI copies: tracked and untracked-but-not-ignored, without node_modules. */
function checkoutFiles(dir: string): string[] {
  const out = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: dir, maxBuffer: 64 << 20 }).toString();
  return out.split("\0").filter((f) => f && !f.startsWith("node_modules/") && !f.includes("/node_modules/") && existsSync(join(dir, f)));
}

function run(cmd: string, args: string[], cwd: string, log: Log, what: string): void {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    throw new Error(`${what} failed (exit ${r.status}):\n${String(r.stdout).slice(-2000)}\n${String(r.stderr).slice(-2000)}`);
  }
  log(`${what}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/** npm install in `dir` unless its node_modules was installed from this very lock file. */
function npmInstall(dir: string, log: Log, inRoot: boolean, rootDir?: string): void {
  const lock = readFileSync(join(dir, "package-lock.json"));
  const sum = createHash("sha256").update(lock).digest("hex");
  const stamp = join(dir, "node_modules", ".bench-lock-sha256");
  if (existsSync(stamp) && readFileSync(stamp, "utf8").trim() === sum) return;
  if (inRoot) {
    run("bash", [TRIXIE, "exec", "-C", rootDir!, "--", "npm", "install", "--no-audit", "--no-fund"], CHECKOUT, log, `npm install in the Debian 13 root (${rootDir})`);
  } else {
    run("npm", ["install", "--no-audit", "--no-fund"], dir, log, `npm install in ${dir}`);
  }
  writeFileSync(stamp, sum + "\n");
}

/** The baseline commit checked out in a worktree under .bench/ (ignored by git), installed. */
export function baselineTree(ref: string, log: Log): Tree {
  const commit = git(["rev-parse", "--short", `${ref}^{commit}`]);
  const dir = join(CHECKOUT, ".bench", `baseline-${commit}`);
  if (!existsSync(join(dir, "package.json"))) {
    rmSync(dir, { recursive: true, force: true });
    git(["worktree", "prune"]);
    mkdirSync(join(CHECKOUT, ".bench"), { recursive: true });
    run("git", ["worktree", "add", "--detach", dir, commit], CHECKOUT, log, `git worktree add ${dir} ${commit}`);
  }
  npmInstall(dir, log, false);
  return { label: commit, hostDir: dir, commit, dirty: false };
}

export function trixieRootPath(): string {
  return execFileSync("bash", [TRIXIE, "path"]).toString().trim();
}

/** Whether the Debian 13 root is built (its marker file exists). */
export function trixieReady(): boolean {
  const root = trixieRootPath();
  return existsSync(join(root, ".haven-trixie-ready"));
}

/** glibc of the host, and of the Debian 13 root when it is built. */
export function glibcVersions(): { host: string; root?: string } {
  const first = (out: string) => out.split("\n")[0].split(" ").at(-1) ?? "?";
  const host = first(execFileSync("ldd", ["--version"]).toString());
  let root: string | undefined;
  if (trixieReady()) {
    try {
      root = first(execFileSync("bash", [TRIXIE, "exec", "--", "ldd", "--version"], { stdio: ["ignore", "pipe", "ignore"] }).toString());
    } catch { /* the root cannot run commands */ }
  }
  return { host, root };
}

/**
 * Copies a tree into the Debian 13 root at /build/<name> (its node_modules kept between runs and
 * reinstalled only when the lock changed) and installs it there.
 */
export function treeInRoot(tree: Tree, name: string, log: Log): Tree {
  if (!trixieReady()) {
    run("bash", [TRIXIE], CHECKOUT, log, "preparing the Debian 13 root (.ci/trixie-root.sh)");
  }
  const root = trixieRootPath();
  const inside = `/build/${name}`;
  const dest = join(root, inside);
  mkdirSync(dest, { recursive: true });
  for (const entry of readdirSync(dest)) {
    if (entry !== "node_modules") rmSync(join(dest, entry), { recursive: true, force: true });
  }
  const files = checkoutFiles(tree.hostDir);
  const tar = spawnSync("bash", ["-c", `tar --null -T - -cf - | tar -xf - -C "$1"`, "sh", dest], {
    cwd: tree.hostDir, input: files.join("\0") + "\0", stdio: ["pipe", "pipe", "pipe"], maxBuffer: 64 << 20,
  });
  if (tar.status !== 0) throw new Error(`copying ${tree.hostDir} into ${dest} failed: ${tar.stderr}`);
  log(`copied ${files.length} files of ${tree.label === "current" ? "this checkout" : tree.label} into the Debian 13 root at ${inside}`);
  npmInstall(dest, log, true, inside);
  return { ...tree, rootDir: inside };
}

export const TRIXIE_SCRIPT = TRIXIE;

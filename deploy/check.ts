/**
 * Checks the deployment files without Docker (the CI machine has no Docker engine):
 *
 *   npm run deploy:check              check; exit code 1 and what is wrong when a check fails
 *   npm run deploy:check -- --write   rewrite deploy/haproxy.cfg from src/cluster/haproxy.ts, then check
 *
 * (`node deploy/check.ts` with Node 24; npm runs it with the Node 24 of node_modules.)
 *
 * 1. deploy/haproxy.cfg is exactly what src/cluster/haproxy.ts writes for the Compose deployment
 *    (the same generator writes `npm run cluster`'s configuration, so the two cannot drift).
 * 2. HAProxy's own configuration test, `haproxy -c -f deploy/haproxy.cfg`, passes; its only
 *    warnings may be the nodes' host names, which resolve inside Compose's network only.
 *    (CI runs this with Debian 12's HAProxy 2.6 on the host, and test/deploy.test.ts runs it
 *    again with Debian 13's HAProxy 3.0 in the Debian 13 root.)
 * 3. deploy/compose.yaml, read by a real YAML parser (PyYAML, Debian's python3-yaml, with its
 *    merge keys resolved), has the three nodes, Redis, PostgreSQL and the proxy as the proxy's
 *    configuration expects them; every secret comes from haven.env (an interpolation, never a
 *    value in the file); and each node's environment, with sample values filled in, is accepted
 *    by Haven's own configuration loader (src/config.ts) as a production cluster node.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { DEPLOY_PROXY, haproxyConfig, nodePath } from "../src/cluster/haproxy.ts";
import { ConfigError, loadConfig } from "../src/config.ts";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const CFG = here("haproxy.cfg");
const COMPOSE = here("compose.yaml");
const ENV_EXAMPLE = here("haven.env.example");
const REPO = here("..");

const started = performance.now();
let failures = 0;
function ok(what: string): void {
  process.stdout.write(`deploy-check: ok    ${what}\n`);
}
function fail(what: string): void {
  failures++;
  process.stdout.write(`deploy-check: FAIL  ${what}\n`);
}
function check(condition: unknown, what: string, detail = ""): boolean {
  if (condition) ok(what);
  else fail(detail ? `${what}: ${detail}` : what);
  return Boolean(condition);
}

// ------------------------------------------------------------------ 1. generated config

const generated = haproxyConfig(DEPLOY_PROXY);
if (process.argv.includes("--write")) {
  writeFileSync(CFG, generated);
  ok("deploy/haproxy.cfg written");
}
const onDisk = existsSync(CFG) ? readFileSync(CFG, "utf8") : "";
if (onDisk === generated) ok("deploy/haproxy.cfg is what src/cluster/haproxy.ts writes");
else {
  const a = onDisk.split("\n"), b = generated.split("\n");
  const i = a.findIndex((line, k) => line !== b[k]);
  const at = i === -1 ? Math.min(a.length, b.length) : i;
  fail(`deploy/haproxy.cfg differs from src/cluster/haproxy.ts's output at line ${at + 1}:\n    file:      ${JSON.stringify(a[at])}\n    generated: ${JSON.stringify(b[at])}\n    (run \`npm run deploy:check -- --write\` after changing the generator)`);
}

// ------------------------------------------------------------------ 2. haproxy -c

const haproxy = spawnSync("haproxy", ["-c", "-f", CFG], { encoding: "utf8" });
if (haproxy.error) {
  fail(`haproxy -c: ${(haproxy.error as NodeJS.ErrnoException).code === "ENOENT" ? "no haproxy binary (apt-get install haproxy)" : haproxy.error.message}`);
} else {
  const out = `${haproxy.stdout}${haproxy.stderr}`;
  const version = /version (\S+)/i.exec(spawnSync("haproxy", ["-v"], { encoding: "utf8" }).stdout ?? "")?.[1] ?? "?";
  const names = DEPLOY_PROXY.nodes.map((n) => n.address.replace(/:\d+$/, ""));
  // the nodes' names resolve only inside Compose's network; nothing else may warn
  const unexpected = out.split("\n").filter((l) => /\[(WARNING|ALERT)\]/.test(l))
    .filter((l) => !names.some((h) => l.includes(`could not resolve address '${h}'`)));
  // exit code 0 is HAProxy's verdict (2.6 also prints "Configuration file is valid", 3.0 does not)
  check(haproxy.status === 0 && unexpected.length === 0,
    `haproxy -c -f deploy/haproxy.cfg (HAProxy ${version})`, `exit code ${haproxy.status}\n${(unexpected.length ? unexpected : out.split("\n")).join("\n")}`);
}

// ------------------------------------------------------------------ 3. compose.yaml

type Yaml = null | boolean | number | string | Yaml[] | { [k: string]: Yaml };
type Obj = { [k: string]: Yaml };

function parseYaml(file: string): Obj {
  const script = "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))";
  try {
    return JSON.parse(execFileSync("python3", ["-c", script, file], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") throw new Error("no python3 to parse YAML (apt-get install python3-yaml)");
    throw new Error(`${file} does not parse: ${String(e.stderr ?? e.message).trim().split("\n").slice(-3).join(" ")}`);
  }
}
const isObj = (v: Yaml | undefined): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const obj = (v: Yaml | undefined): Obj => (isObj(v) ? v : {});
const list = (v: Yaml | undefined): Yaml[] => (Array.isArray(v) ? v : []);

/** Every `${NAME…}` a string refers to (`$$` is a literal dollar). */
function references(s: string): string[] {
  return [...s.replaceAll("$$", "").matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]);
}
/** Compose interpolation: `${V}`, `${V:-default}`, `${V-default}`, `${V:?error}`, `${V?error}`, `$$`. */
function interpolate(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}/g, (all, name: string | undefined, colon: string, op: string, arg: string) => {
    if (all === "$$") return "$";
    const v = env[name!];
    const missing = v === undefined || (colon === ":" && v === "");
    if (op === "-") return missing ? arg : v!;
    if (op === "?" && missing) throw new Error(`\${${name}}: ${arg}`);
    return v ?? "";
  });
}
function walkStrings(v: Yaml, f: (s: string, path: string) => void, path = ""): void {
  if (typeof v === "string") f(v, path);
  else if (Array.isArray(v)) v.forEach((x, i) => walkStrings(x, f, `${path}[${i}]`));
  else if (isObj(v)) for (const [k, x] of Object.entries(v)) walkStrings(x, f, path ? `${path}.${k}` : k);
}

/** The keys the Compose specification allows at the top, in a service and in a health check (no docker here to ask). */
const TOP_KEYS = new Set(["version", "name", "include", "services", "models", "networks", "volumes", "secrets", "configs"]);
const SERVICE_KEYS = new Set(("develop deploy annotations attach build blkio_config cap_add cap_drop cgroup cgroup_parent command configs " +
  "container_name cpu_count cpu_percent cpu_shares cpu_quota cpu_period cpu_rt_period cpu_rt_runtime cpus cpuset credential_spec " +
  "depends_on device_cgroup_rules devices dns dns_opt dns_search domainname entrypoint env_file label_file environment expose extends " +
  "provider external_links extra_hosts gpus group_add healthcheck hostname image init ipc isolation labels links logging mac_address " +
  "mem_limit mem_reservation mem_swappiness memswap_limit network_mode models networks oom_kill_disable oom_score_adj pid pids_limit " +
  "platform ports post_start pre_stop privileged profiles pull_policy pull_refresh_after read_only restart runtime scale security_opt " +
  "shm_size secrets sysctls stdin_open stop_grace_period stop_signal storage_opt tmpfs tty ulimits use_api_socket user uts userns_mode " +
  "volumes volumes_from working_dir").split(" "));
const HEALTHCHECK_KEYS = new Set(["disable", "interval", "retries", "test", "timeout", "start_period", "start_interval"]);
const DURATION = /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/;

function checkSpecKeys(doc: Obj): void {
  const wrong: string[] = [];
  for (const k of Object.keys(doc)) if (!TOP_KEYS.has(k) && !k.startsWith("x-")) wrong.push(k);
  for (const [name, raw] of Object.entries(obj(doc.services))) {
    const svc = obj(raw);
    for (const k of Object.keys(svc)) if (!SERVICE_KEYS.has(k) && !k.startsWith("x-")) wrong.push(`services.${name}.${k}`);
    const hc = obj(svc.healthcheck);
    for (const k of Object.keys(hc)) if (!HEALTHCHECK_KEYS.has(k)) wrong.push(`services.${name}.healthcheck.${k}`);
    for (const k of ["interval", "timeout", "start_period"]) if (hc[k] !== undefined && !DURATION.test(String(hc[k]))) wrong.push(`services.${name}.healthcheck.${k}=${hc[k]}`);
    if (svc.stop_grace_period !== undefined && !DURATION.test(String(svc.stop_grace_period))) wrong.push(`services.${name}.stop_grace_period`);
    const test = list(hc.test);
    if (hc.test !== undefined && !["CMD", "CMD-SHELL"].includes(String(test[0]))) wrong.push(`services.${name}.healthcheck.test starts with ${test[0]}`);
    for (const [dep, how] of Object.entries(obj(svc.depends_on))) {
      if (!["service_started", "service_healthy", "service_completed_successfully"].includes(String(obj(how).condition))) wrong.push(`services.${name}.depends_on.${dep}`);
    }
    for (const dep of [...list(svc.depends_on), ...Object.keys(obj(svc.depends_on))].map(String)) if (obj(doc.services)[dep] === undefined) wrong.push(`services.${name} depends on unknown ${dep}`);
    for (const net of list(svc.networks).map(String)) if (obj(doc.networks)[net] === undefined) wrong.push(`services.${name} joins undeclared network ${net}`);
    if (Object.keys(svc).some((k) => k === "<<")) wrong.push(`services.${name}: an unresolved merge key`);
  }
  check(wrong.length === 0, "compose.yaml uses only the Compose specification's keys, durations and conditions, and names only declared services and networks", wrong.join(", "));
}

function checkCompose(): void {
  const doc = parseYaml(COMPOSE);
  ok("deploy/compose.yaml parses (PyYAML)");
  checkSpecKeys(doc);
  const services = obj(doc.services);
  const nodeNames = DEPLOY_PROXY.nodes.map((n) => n.name);
  const expected = [...nodeNames, "proxy", "redis", "postgres"].sort();
  check(JSON.stringify(Object.keys(services).sort()) === JSON.stringify(expected), `services are ${expected.join(", ")}`, `found ${Object.keys(services).join(", ")}`);

  // images: official images by tag (never :latest, never untagged); the nodes build the Dockerfile
  for (const [name, image] of [["proxy", "haproxy"], ["redis", "redis"], ["postgres", "postgres"]] as const) {
    const ref = String(obj(services[name]).image ?? "");
    check(new RegExp(`^${image}:[0-9][A-Za-z0-9._-]*$`).test(ref), `${name} runs the official ${image} image by version tag (${ref || "none"})`);
  }

  // secrets: only interpolations, never values; every variable is in haven.env.example, which holds no secret value
  const example = readFileSync(ENV_EXAMPLE, "utf8");
  const exampleValues = new Map(example.split("\n").filter((l) => /^[A-Z_][A-Z0-9_]*=/.test(l)).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)] as const));
  const secret = /SECRET|_KEY$|TOKEN|PASSWORD/;
  const referenced = new Set<string>();
  const literalSecrets: string[] = [];
  walkStrings(doc, (s, path) => {
    references(s).forEach((r) => referenced.add(r));
    const key = path.split(".").at(-1) ?? "";
    if (secret.test(key) && !/^\$\{[A-Z_][A-Z0-9_]*:\?[^}]*\}$/.test(s)) literalSecrets.push(path);
    if (/:\/\/[^/\s]*:[^@$\s/]+@/.test(s)) literalSecrets.push(`${path} (a password in a URL)`);
  });
  check(literalSecrets.length === 0, "every secret in compose.yaml is a required interpolation (${NAME:?…}), never a value", literalSecrets.join(", "));
  const unlisted = [...referenced].filter((r) => !exampleValues.has(r));
  check(unlisted.length === 0, `every variable compose.yaml uses is in haven.env.example (${referenced.size})`, `missing: ${unlisted.join(", ")}`);
  const filled = [...exampleValues].filter(([k, v]) => secret.test(k) && v !== "").map(([k]) => k);
  check(filled.length === 0, "haven.env.example holds no secret value", filled.join(", "));
  const ignored = (file: string, line: string) => readFileSync(`${REPO}/${file}`, "utf8").split("\n").includes(line);
  check(ignored(".gitignore", "deploy/haven.env") && ignored(".dockerignore", "deploy"), "deploy/haven.env is ignored by git and kept out of docker build's context");

  // sample values for the interpolation, shaped like the real ones
  const sample: Record<string, string> = {
    HAVEN_PROXY_PUBLIC_ADDRESS: "haven.example.org:443",
    HAVEN_PROXY_PORT: "8080",
    HAVEN_TOKEN_SECRET_KEY: `k4.secret.${randomBytes(64).toString("base64url")}`,
    HAVEN_MEDICAL_MASTER_KEY: randomBytes(32).toString("base64"),
    HAVEN_METRICS_TOKEN: randomBytes(32).toString("base64"),
    POSTGRES_PASSWORD: randomBytes(24).toString("hex"),
    REDIS_PASSWORD: randomBytes(24).toString("hex"),
  };
  const withSample = (v: Yaml): Yaml => (typeof v === "string" ? interpolate(v, sample) : Array.isArray(v) ? v.map(withSample) : isObj(v) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withSample(x)])) : v);
  let resolved: Obj;
  try {
    resolved = obj(withSample(doc));
  } catch (error) {
    fail(`interpolation with sample values: ${(error as Error).message}`);
    return;
  }
  const rs = obj(resolved.services);
  try {
    interpolate(JSON.stringify(doc.services), {});
    fail("compose.yaml starts without haven.env (a required variable should stop it)");
  } catch {
    ok("compose.yaml refuses to start without haven.env's required variables");
  }

  // the nodes
  const pg = obj(rs.postgres), pgEnv = obj(pg.environment);
  const redisCommand = list(obj(rs.redis).command).map(String).join(" ");
  check(/^sh -c exec docker-entrypoint\.sh redis-server .*--requirepass\s+"\$REDIS_PASSWORD"/.test(redisCommand), "redis asks for REDIS_PASSWORD, started by the image's entrypoint (as the redis user)", redisCommand);
  check(list(pg.volumes).some((v) => /^postgres-data:\/var\/lib\/postgresql$/.test(String(v))) && isObj(obj(resolved.volumes)["postgres-data"]),
    "postgres keeps its data in the named volume postgres-data (/var/lib/postgresql, PostgreSQL 18's layout)");
  for (const n of DEPLOY_PROXY.nodes) {
    const s = obj(rs[n.name]);
    const env = Object.fromEntries(Object.entries(obj(s.environment)).map(([k, v]) => [k, String(v)]));
    const what = `${n.name}:`;
    const build = obj(s.build);
    check(build.context === ".." && build.dockerfile === "Dockerfile" && existsSync(`${REPO}/Dockerfile`), `${what} built from the repository's Dockerfile`);
    const [host, port] = [n.address.replace(/:\d+$/, ""), n.address.split(":").at(-1)];
    check(host === n.name && env.PORT === port, `${what} the proxy reaches it at ${n.address} (service ${n.name}, PORT ${env.PORT})`);
    const test = list(obj(s.healthcheck).test).map(String).join(" ");
    check(/^CMD /.test(test) && test.includes(`http://127.0.0.1:${port}/ready`) && /status===200/.test(test), `${what} health check asks /ready`);
    const deps = obj(s.depends_on);
    check(obj(deps.postgres).condition === "service_healthy" && obj(deps.redis).condition === "service_healthy", `${what} starts once postgres and redis are healthy`);
    check(JSON.stringify(s.networks) === JSON.stringify(["backend"]) && s.ports === undefined, `${what} on the internal network only, no port published`);
    let config: ReturnType<typeof loadConfig> | undefined;
    try {
      config = loadConfig(env);
    } catch (error) {
      fail(`${what} Haven's configuration refuses its environment: ${error instanceof ConfigError ? error.message : String(error)}`);
      continue;
    }
    const redisUrl = new URL(config.cluster?.redisUrl ?? "redis://none");
    const dbUrl = new URL(config.database.url ?? "postgres://none");
    check(config.env === "production" && config.nodeName === n.name && config.trustProxy
      && config.cluster?.publicAddress === `${sample.HAVEN_PROXY_PUBLIC_ADDRESS}${nodePath(n.name)}`
      && redisUrl.hostname === "redis" && redisUrl.password === sample.REDIS_PASSWORD
      && dbUrl.hostname === "postgres" && decodeURIComponent(dbUrl.username) === pgEnv.POSTGRES_USER && dbUrl.password === sample.POSTGRES_PASSWORD
      && dbUrl.pathname === `/${pgEnv.POSTGRES_DB}`
      && env.HAVEN_TOKEN_SECRET_KEY === sample.HAVEN_TOKEN_SECRET_KEY && env.HAVEN_MEDICAL_MASTER_KEY === sample.HAVEN_MEDICAL_MASTER_KEY
      && config.metricsToken === sample.HAVEN_METRICS_TOKEN,
    `${what} Haven accepts its environment as a production cluster node: public address ${config.cluster?.publicAddress}, trusts the proxy, Redis and PostgreSQL with their passwords, keys from haven.env`);
  }

  // the proxy: the checked-in configuration, on the port it listens on
  const proxy = obj(rs.proxy);
  check(list(proxy.volumes).map(String).includes("./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"), "proxy mounts deploy/haproxy.cfg read-only where the haproxy image reads it");
  const bindPort = DEPLOY_PROXY.bind.split(":").at(-1);
  const published = list(proxy.ports).map(String);
  check(published.length === 1 && published[0].endsWith(`:${bindPort}`), `proxy publishes its frontend port ${bindPort} (${published.join(", ")})`);
  check(JSON.stringify([...list(proxy.networks)].sort()) === JSON.stringify(["backend", "edge"]) && obj(obj(resolved.networks).backend).internal === true,
    "proxy joins the published network and the internal one (internal: true) where the nodes, Redis and PostgreSQL are");
  check(nodeNames.every((name) => generated.includes(`server ${name} ${name}:`)), "every node of compose.yaml is a server of deploy/haproxy.cfg");
}

try {
  checkCompose();
} catch (error) {
  fail((error as Error).message);
}

const ms = Math.round(performance.now() - started);
process.stdout.write(failures === 0 ? `deploy-check: passed in ${ms} ms\n` : `deploy-check: ${failures} check(s) FAILED (${ms} ms)\n`);
process.exitCode = failures === 0 ? 0 : 1;

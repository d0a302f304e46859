/**
 * The deployment files (deploy/) cannot run here (no Docker engine, no
 * Kubernetes), so this checks them against what they deploy: every TERN_*
 * variable and flag is one of src/replica/config.ts and its value parses, the
 * ports, probes, selectors and the image's user agree with each other, and the
 * Dockerfile builds and runs what the repository compiles to.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { envOf, flagOf, parseReplicaConfig, replicaOptions } from '../../src/replica/config.js';
import { REPLICA_NODE_FLAGS } from '../../src/replica/node-flags.js';
import { parseTokensFile } from '../../src/auth/tokens.js';

// Parsed YAML is untyped data; the assertions below are what checks its shape.
type Y = any;

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const K8S = join(DEPLOY, 'kubernetes');

const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/** Every document of a YAML file (merge keys on, as Compose reads them); fails on any parse error. */
function loadYaml(path: string): Y[] {
  const docs = YAML.parseAllDocuments(read(path), { merge: true });
  const list = Array.isArray(docs) ? docs : [docs];
  for (const doc of list) expect(doc.errors.map((e) => e.message), path).toEqual([]);
  return list.map((doc) => doc.toJS()).filter((doc) => doc != null);
}

const ENV_NAMES = new Set(Object.keys(replicaOptions).map(envOf));
const FLAGS = new Set(Object.keys(replicaOptions).map(flagOf));
const DEFAULT_CLIENT_PORT = replicaOptions.clientPort.default;
const DEFAULT_PEER_PORT = replicaOptions.peerPort.default;

/** TERN_* names in parsed YAML (keys and values alike; comments are not data). */
function ternNamesIn(data: unknown): string[] {
  return [...new Set(JSON.stringify(data).match(/\bTERN_[A-Z0-9_]+/g) ?? [])];
}

/** `--flags` among a container's command and arguments (`--flag=value` too). */
function flagsIn(...argLists: unknown[]): string[] {
  return argLists
    .flatMap((a) => (Array.isArray(a) ? a : typeof a === 'string' ? a.split(/\s+/) : []))
    .map(String)
    .filter((a) => a.startsWith('--'))
    .map((a) => a.split('=')[0]!);
}

/** Only the TERN_* entries: what parseReplicaConfig would see of the process environment. */
function ternOnly(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('TERN_')));
}

// ---------------------------------------------------------------- Dockerfile

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Instructions of a Dockerfile, continuation lines joined, comments dropped, numbered by stage. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    pending += (pending ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) continue;
    const [, op, args] = /^(\S+)\s*(.*)$/.exec(pending)!;
    if (op!.toUpperCase() === 'FROM') stage++;
    out.push({ op: op!.toUpperCase(), args: args!, stage });
    pending = '';
  }
  return out;
}

const dockerfile = parseDockerfile(read('deploy/Dockerfile'));
const lastStage = Math.max(...dockerfile.map((i) => i.stage));
const inStage = (stage: number, op: string) => dockerfile.filter((i) => i.stage === stage && i.op === op);

/** COPY sources (flags such as --from and --chown dropped; the last word is the destination). */
function copySources(i: Instruction): string[] {
  const words = i.args.split(/\s+/).filter((w) => !w.startsWith('--'));
  return words.slice(0, -1).map((w) => w.replace(/^\/app\//, '').replace(/^\.\//, '').replace(/\/$/, ''));
}

/** The numeric uid the final stage runs as. */
function imageUid(): number {
  const users = inStage(lastStage, 'USER');
  expect(users.length, 'the final stage sets USER').toBeGreaterThan(0);
  const user = users.at(-1)!.args.split(':')[0]!;
  // Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
  expect(user).toMatch(/^\d+$/);
  return Number(user);
}

// ---------------------------------------------------------------- Compose

const compose: Y = loadYaml('deploy/compose.yaml')[0];
const REPLICA_SERVICES = ['r1', 'r2', 'r3'];

function composeEnv(service: Y): Record<string, string> {
  const env = service.environment ?? {};
  if (!Array.isArray(env)) return env;
  return Object.fromEntries(env.map((kv: string) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

/** Published ports as {host, container}: "7002:7001", "127.0.0.1:7002:7001/tcp" or the long form. */
function composePorts(service: Y): { host?: number; container: number }[] {
  return (service.ports ?? []).map((p: Y) => {
    if (typeof p === 'object') return { host: p.published === undefined ? undefined : Number(p.published), container: Number(p.target) };
    const parts = String(p).replace(/\/(tcp|udp)$/, '').split(':');
    return { host: parts.length > 1 ? Number(parts.at(-2)) : undefined, container: Number(parts.at(-1)) };
  });
}

function healthcheckText(service: Y): string {
  const test = service.healthcheck?.test;
  return Array.isArray(test) ? test.join(' ') : String(test ?? '');
}

// ---------------------------------------------------------------- Kubernetes

const kustomization: Y = loadYaml('deploy/kubernetes/kustomization.yaml')[0];
const manifests: Y[] = (kustomization.resources as string[]).flatMap((r) => loadYaml(`deploy/kubernetes/${r}`));

function manifest(kind: string, name?: string): Y {
  const found = manifests.filter((m) => m.kind === kind && (name === undefined || m.metadata?.name === name));
  expect(found.length, `${kind} ${name ?? ''}`).toBe(1);
  return found[0];
}

const statefulSet: Y = manifest('StatefulSet');
const podSpec: Y = statefulSet.spec.template.spec;
const podLabels: Record<string, string> = statefulSet.spec.template.metadata.labels;
const container: Y = podSpec.containers.find((c: Y) => c.name === 'tern');

/** What the downward API gives pod tern-0 in namespace default. */
const SAMPLE_POD = { 'metadata.name': 'tern-0', 'metadata.namespace': 'default' } as Record<string, string>;

/**
 * The container's environment as the kubelet builds it: envFrom first, then env in order,
 * with $(VAR) expanded only from variables defined before (else it stays literal: an error here).
 */
function podEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, manifest('ConfigMap', from.configMapRef.name).data);
    else if (from.secretRef) Object.assign(env, manifest('Secret', from.secretRef.name).stringData);
    else throw new Error(`unexpected envFrom ${JSON.stringify(from)}`);
  }
  for (const e of container.env ?? []) {
    if (typeof e.value === 'string') {
      env[e.name] = e.value.replace(/\$\(([A-Za-z0-9_]+)\)/g, (_: string, v: string) => {
        if (env[v] === undefined) throw new Error(`$(${v}) in ${e.name} is not defined before it`);
        return env[v]!;
      });
    } else if (e.valueFrom?.fieldRef) {
      const value = SAMPLE_POD[e.valueFrom.fieldRef.fieldPath];
      if (value === undefined) throw new Error(`no sample value for ${e.valueFrom.fieldRef.fieldPath}`);
      env[e.name] = value;
    } else if (e.valueFrom?.secretKeyRef) {
      env[e.name] = manifest('Secret', e.valueFrom.secretKeyRef.name).stringData[e.valueFrom.secretKeyRef.key];
    } else if (e.valueFrom?.configMapKeyRef) {
      env[e.name] = manifest('ConfigMap', e.valueFrom.configMapKeyRef.name).data[e.valueFrom.configMapKeyRef.key];
    } else {
      throw new Error(`env ${e.name} has neither a string value nor a supported valueFrom`);
    }
  }
  return env;
}

/** A container port by name or number, as a number. */
function resolvePort(port: string | number): number {
  if (typeof port === 'number') return port;
  const named = (container.ports as Y[]).find((p) => p.name === port);
  if (!named) throw new Error(`no container port named ${port}`);
  return named.containerPort;
}

/** Kubernetes memory quantities: 2Gi, 512Mi, 1G, 1000000. */
function bytesOf(quantity: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(quantity));
  if (!m) throw new Error(`unexpected quantity ${quantity}`);
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * unit;
}

const isSubset = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

// ============================================================================

describe('deploy/ YAML', () => {
  const yamlFiles = walk(DEPLOY).filter((f) => /\.ya?ml$/.test(f));

  it('has the compose file and the Kubernetes manifests', () => {
    const names = yamlFiles.map((f) => relative(DEPLOY, f));
    expect(names).toContain('compose.yaml');
    expect(names).toContain(join('kubernetes', 'kustomization.yaml'));
  });

  it.each(yamlFiles.map((f) => relative(ROOT, f)))('%s parses without errors', (path) => {
    expect(loadYaml(path).length).toBeGreaterThan(0);
  });

  it('names only TERN_* variables that src/replica/config.ts defines', () => {
    const named = [...ternNamesIn(compose), ...ternNamesIn(manifests), ...ternNamesIn(dockerfile)];
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((n) => !ENV_NAMES.has(n))).toEqual([]);
  });

  it('passes only flags that src/replica/config.ts defines to tern replica', () => {
    const flags = [
      ...REPLICA_SERVICES.flatMap((s) => flagsIn(compose.services[s].command, compose.services[s].entrypoint)),
      ...flagsIn(container.command, container.args),
      ...flagsIn(...inStage(lastStage, 'CMD').map((i) => i.args)),
    ];
    expect(flags.filter((f) => !FLAGS.has(f))).toEqual([]);
  });
});

describe('deploy/Dockerfile', () => {
  it('is multi-stage: compiles in one stage, runs in a slim one', () => {
    expect(lastStage).toBeGreaterThanOrEqual(1);
    const runs = inStage(0, 'RUN').map((i) => i.args).join('\n');
    expect(runs).toMatch(/npm ci/);
    expect(runs).toMatch(/tsc -p tsconfig\.json/);
    expect(runs).toMatch(/npm prune --omit=dev/);
    expect(inStage(lastStage, 'FROM')[0]!.args).toMatch(/^node:20-\S*slim/);
  });

  it('copies every directory tsconfig.json compiles into the build stage', () => {
    const tsconfig = JSON.parse(read('tsconfig.json'));
    const copied = inStage(0, 'COPY').flatMap(copySources);
    for (const dir of new Set((tsconfig.include as string[]).map((g) => g.split('/')[0]!))) expect(copied).toContain(dir);
    for (const file of ['package.json', 'package-lock.json', 'tsconfig.json']) expect(copied).toContain(file);
  });

  it('runs dist/src/cli/main.js replica, which tsc makes of src/cli/main.ts, with the replica\'s node flags', () => {
    const entrypoint = JSON.parse(inStage(lastStage, 'ENTRYPOINT').at(-1)!.args) as string[];
    expect(entrypoint).toEqual(['node', ...REPLICA_NODE_FLAGS, 'dist/src/cli/main.js', 'replica']);
    const { outDir, rootDir } = JSON.parse(read('tsconfig.json')).compilerOptions;
    expect(resolve(ROOT, outDir)).toBe(join(ROOT, 'dist'));
    expect(resolve(ROOT, rootDir)).toBe(resolve(ROOT));
    const source = entrypoint.at(-2)!.replace(/^dist\//, '').replace(/\.js$/, '.ts');
    expect(existsSync(join(ROOT, source)), source).toBe(true);
    // The runtime stage holds what that needs: package.json ("type": "module"), node_modules, dist.
    const copied = inStage(lastStage, 'COPY').flatMap(copySources);
    expect(copied).toEqual(expect.arrayContaining(['package.json', 'node_modules', 'dist']));
  });

  it('imports in src only production dependencies (the image prunes the dev ones)', () => {
    const deps = new Set(Object.keys(JSON.parse(read('package.json')).dependencies ?? {}));
    const builtins = new Set(builtinModules);
    const missing: string[] = [];
    for (const file of walk(join(ROOT, 'src')).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(file, 'utf8');
      const specs = [
        ...text.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^;]*?\sfrom\s+['"]([^'"]+)['"]/gm),
        ...text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm),
        ...text.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
      ].map((m) => m[1]!);
      for (const spec of specs) {
        if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec.split('/')[0]!)) continue;
        const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!deps.has(pkg)) missing.push(`${relative(ROOT, file)}: ${pkg}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('runs as a non-root numeric user and exposes the default client and peer ports', () => {
    expect(imageUid()).toBeGreaterThan(0);
    const exposed = inStage(lastStage, 'EXPOSE').flatMap((i) => i.args.split(/\s+/)).map((p) => Number(p.replace(/\/tcp$/, '')));
    expect(exposed).toEqual(expect.arrayContaining([DEFAULT_CLIENT_PORT, DEFAULT_PEER_PORT]));
  });

  it('checks health with node on /healthz of the client port', () => {
    const healthcheck = inStage(lastStage, 'HEALTHCHECK').at(-1)!.args;
    expect(healthcheck).toMatch(/CMD \[\s*"node"/);
    expect(healthcheck).toContain('/healthz');
    expect(healthcheck).toContain(String(DEFAULT_CLIENT_PORT));
  });

  it('keeps the build inputs in the build context (Dockerfile.dockerignore)', () => {
    const patterns = read('deploy/Dockerfile.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'bench', 'test', 'deploy']) {
      expect(patterns.filter((p) => p === needed || p === '*' || p === '**' || needed.startsWith(p.replace(/\/$/, '') + '/')), needed).toEqual([]);
    }
  });
});

describe('deploy/compose.yaml', () => {
  const services: Record<string, Y> = compose.services;

  it('has etcd, MinIO with its bucket job, three replicas, Prometheus and Grafana', () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['etcd', 'minio', 'minio-init', ...REPLICA_SERVICES, 'prometheus', 'grafana']));
  });

  it('builds the replicas from deploy/Dockerfile with the repository root as context', () => {
    for (const name of REPLICA_SERVICES) {
      const { build } = services[name];
      const context = resolve(DEPLOY, build.context);
      expect(context, name).toBe(resolve(ROOT));
      expect(existsSync(join(context, build.dockerfile)), name).toBe(true);
    }
  });

  it.each(REPLICA_SERVICES)('%s: its environment is a valid replica configuration', (name) => {
    const env = composeEnv(services[name]);
    // Compose wants strings: an unquoted true or 7001 is not passed on as written.
    for (const [k, v] of Object.entries(env)) expect(typeof v, k).toBe('string');
    const config = parseReplicaConfig([], ternOnly(env));
    expect(config.id).toBe(name);
    expect(config.host).toBe('0.0.0.0');
    // Peers and forwarded clients reach it by its service name on the compose network.
    expect(config.advertiseHost).toBe(name);
    expect(services[config.advertiseHost]).toBeDefined();
  });

  it('gives every replica a distinct id and host port', () => {
    const ids = REPLICA_SERVICES.map((s) => composeEnv(services[s]).TERN_ID);
    const hostPorts = REPLICA_SERVICES.flatMap((s) => composePorts(services[s]).map((p) => p.host));
    expect(new Set(ids).size).toBe(3);
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
  });

  it.each(REPLICA_SERVICES)('%s: publishes, exposes and health-checks the ports it listens on', (name) => {
    const service = services[name];
    const config = parseReplicaConfig([], ternOnly(composeEnv(service)));
    const ports = composePorts(service);
    expect(ports.length).toBeGreaterThan(0);
    for (const p of ports) expect(p.container).toBe(config.clientPort);
    expect((service.expose ?? []).map(Number)).toContain(config.peerPort);
    expect(healthcheckText(service)).toMatch(new RegExp(`127\\.0\\.0\\.1:${config.clientPort}/(healthz|readyz)\\b`));
  });

  it('points the replicas at the etcd and MinIO services, with MinIO\'s credentials and bucket', () => {
    const minio = composeEnv(services.minio);
    for (const name of REPLICA_SERVICES) {
      const config = parseReplicaConfig([], ternOnly(composeEnv(services[name])));
      for (const endpoint of config.etcd) expect(services[new URL(endpoint).hostname], endpoint).toBeDefined();
      expect(new URL(config.etcd[0]!).hostname).toBe('etcd');
      expect(new URL(config.s3Endpoint).hostname).toBe('minio');
      expect(config.s3ForcePathStyle).toBe('true');
      expect([config.s3AccessKeyId, config.s3SecretAccessKey]).toEqual([minio.MINIO_ROOT_USER, minio.MINIO_ROOT_PASSWORD]);
    }
    const bucket = parseReplicaConfig([], ternOnly(composeEnv(services.r1))).s3Bucket;
    const init = [services['minio-init'].entrypoint, services['minio-init'].command].flat().join(' ');
    expect(init).toMatch(new RegExp(`mc mb .*local/${bucket}\\b`));
  });

  it('waits only on dependencies that can report what it waits for', () => {
    for (const [name, service] of Object.entries(services)) {
      const dependsOn = service.depends_on ?? {};
      const entries: [string, Y][] = Array.isArray(dependsOn) ? dependsOn.map((d: string) => [d, {}]) : Object.entries(dependsOn);
      for (const [dep, { condition }] of entries) {
        expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
        if (condition === 'service_healthy') expect(services[dep].healthcheck, `${dep} healthcheck`).toBeDefined();
        if (condition === 'service_completed_successfully') expect([undefined, 'no']).toContain(services[dep].restart);
      }
    }
  });
});

describe('deploy/kubernetes', () => {
  // Built inside each test, so that a broken environment fails tests with its reason.
  const config = () => parseReplicaConfig([], ternOnly(podEnv()));

  it('lists every manifest in kustomization.yaml', () => {
    const files = readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(files.sort());
    expect(manifests.map((m) => m.kind).sort()).toEqual(['ConfigMap', 'NetworkPolicy', 'PodDisruptionBudget', 'Secret', 'Secret', 'Service', 'Service', 'StatefulSet']);
  });

  it('writes ConfigMap data, Secret stringData, env values and annotations as strings', () => {
    const values: [string, unknown][] = [
      ...Object.entries(manifest('ConfigMap').data),
      ...manifests.filter((m) => m.kind === 'Secret').flatMap((m) => Object.entries(m.stringData)),
      ...(container.env as Y[]).filter((e) => 'value' in e).map((e): [string, unknown] => [e.name, e.value]),
      ...Object.entries(statefulSet.spec.template.metadata.annotations ?? {}),
    ];
    for (const [k, v] of values) expect(typeof v, k).toBe('string');
  });

  it('keeps the S3 keys in the Secret, and per-pod settings out of the shared ConfigMap', () => {
    expect(Object.keys(manifest('Secret', 'tern-s3').stringData).sort()).toEqual(['TERN_S3_ACCESS_KEY_ID', 'TERN_S3_SECRET_ACCESS_KEY']);
    const shared = Object.keys(manifest('ConfigMap').data);
    for (const perPod of ['TERN_ID', 'TERN_ADVERTISE_HOST', 'TERN_S3_ACCESS_KEY_ID', 'TERN_S3_SECRET_ACCESS_KEY']) expect(shared).not.toContain(perPod);
  });

  it('gives pod tern-0 a valid configuration: its name as id, its stable DNS name advertised', () => {
    const c = config();
    expect(c.id).toBe('tern-0');
    expect(c.host).toBe('0.0.0.0');
    expect(c.advertiseHost).toBe(`tern-0.${statefulSet.spec.serviceName}.default.svc.cluster.local`);
    expect(c.etcd).toEqual(['http://etcd:2379']);
    expect(c.maxBufferBytes).toBe(536870912);
  });

  it('runs three replicas, all at once, behind the headless Service', () => {
    expect(statefulSet.spec.replicas).toBe(3);
    expect(statefulSet.spec.replicas).toBe(config().replicas);
    expect(statefulSet.spec.podManagementPolicy).toBe('Parallel');
    expect(isSubset(statefulSet.spec.selector.matchLabels, podLabels)).toBe(true);
    const headless = manifest('Service', statefulSet.spec.serviceName);
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
  });

  it('declares the client and peer ports it listens on', () => {
    expect(resolvePort('client')).toBe(config().clientPort);
    expect(resolvePort('peer')).toBe(config().peerPort);
  });

  it('probes readiness on /readyz and liveness on /healthz of the client port', () => {
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(resolvePort(container.readinessProbe.httpGet.port)).toBe(config().clientPort);
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(resolvePort(container.livenessProbe.httpGet.port)).toBe(config().clientPort);
  });

  it('routes both Services to the pods\' client and peer ports', () => {
    const target = (svc: Y, name: string) => {
      const port = (svc.spec.ports as Y[]).find((p) => p.name === name);
      expect(port, `${svc.metadata.name} port ${name}`).toBeDefined();
      return resolvePort(port.targetPort ?? port.port);
    };
    const headless = manifest('Service', 'tern-peers');
    const client = manifest('Service', 'tern');
    for (const svc of [headless, client]) expect(isSubset(svc.spec.selector, podLabels), svc.metadata.name).toBe(true);
    expect(target(headless, 'peer')).toBe(config().peerPort);
    expect(target(headless, 'client')).toBe(config().clientPort);
    expect(target(client, 'client')).toBe(config().clientPort);
  });

  it('opens the client port (clients, probes, Prometheus) to all and the peer port to the replicas alone (NetworkPolicy)', () => {
    const policy = manifest('NetworkPolicy', 'tern');
    expect(isSubset(policy.spec.podSelector.matchLabels, podLabels)).toBe(true);
    expect(policy.spec.policyTypes).toContain('Ingress');
    const rules: Y[] = policy.spec.ingress;
    const portsOf = (rule: Y): number[] => (rule.ports as Y[]).map((p) => resolvePort(p.port));
    // Every port the StatefulSet declares is covered, and nothing else.
    const declared = (container.ports as Y[]).map((p) => p.containerPort as number);
    expect(new Set(rules.flatMap(portsOf))).toEqual(new Set(declared));
    expect(rules.filter((r) => r.from === undefined).flatMap(portsOf)).toEqual([config().clientPort]);
    // Prometheus scrapes the port the open rule lets in.
    expect(Number(statefulSet.spec.template.metadata.annotations['prometheus.io/port'])).toBe(config().clientPort);
    const peerRules = rules.filter((r) => portsOf(r).includes(config().peerPort));
    expect(peerRules.length).toBe(1);
    expect(portsOf(peerRules[0])).toEqual([config().peerPort]);
    for (const from of peerRules[0].from as Y[]) {
      expect(Object.keys(from)).toEqual(['podSelector']);
      expect(isSubset(from.podSelector.matchLabels, podLabels)).toBe(true);
    }
  });

  it('lets voluntary disruptions take one replica at a time', () => {
    const pdb = manifest('PodDisruptionBudget', 'tern');
    expect(isSubset(pdb.spec.selector.matchLabels, podLabels)).toBe(true);
    if (pdb.spec.maxUnavailable !== undefined) expect(pdb.spec.maxUnavailable).toBe(1);
    else expect(pdb.spec.minAvailable).toBe(2);
  });

  it('runs as the Dockerfile\'s user, non-root, with a read-only root filesystem', () => {
    const pod = podSpec.securityContext ?? {};
    const own = container.securityContext ?? {};
    expect(own.runAsUser ?? pod.runAsUser).toBe(imageUid());
    expect(own.runAsNonRoot ?? pod.runAsNonRoot).toBe(true);
    expect(own.readOnlyRootFilesystem).toBe(true);
    expect(own.allowPrivilegeEscalation).toBe(false);
  });

  it('turns off service links, whose <SERVICE>_PORT variables could collide with TERN_* settings', () => {
    expect(podSpec.enableServiceLinks).toBe(false);
  });

  it('keeps the memory bound and read cache well under the memory limit', () => {
    const limit = bytesOf(container.resources.limits.memory);
    const request = bytesOf(container.resources.requests.memory);
    expect(request).toBeLessThanOrEqual(limit);
    expect(container.resources.requests.cpu).toBeDefined();
    expect(config().maxBufferBytes + config().readCacheBytes).toBeLessThanOrEqual(limit / 2);
  });

  it('announces /metrics on the client port to Prometheus and stops within a grace period', () => {
    const annotations = statefulSet.spec.template.metadata.annotations;
    expect(annotations['prometheus.io/scrape']).toBe('true');
    expect(Number(annotations['prometheus.io/port'])).toBe(config().clientPort);
    expect(annotations['prometheus.io/path']).toBe('/metrics');
    expect(podSpec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(config().leaseTtlSeconds * 2);
  });

  it('gives the controlled shutdown its whole timeout after the preStop pause, inside the grace period', () => {
    const preStop = container.lifecycle.preStop.exec.command as string[];
    expect(preStop[0]).toBe('sleep');
    const pauseMs = Number(preStop[1]) * 1000;
    expect(pauseMs + config().shutdownTimeoutMs).toBeLessThan(podSpec.terminationGracePeriodSeconds * 1000);
  });

  it('takes the settings from the ConfigMap and Secret defined here', () => {
    const refs = (container.envFrom as Y[]).map((f) => (f.configMapRef ? ['ConfigMap', f.configMapRef.name] : ['Secret', f.secretRef.name]));
    expect(refs).toEqual(expect.arrayContaining([['ConfigMap', manifest('ConfigMap').metadata.name], ['Secret', manifest('Secret', 'tern-s3').metadata.name]]));
  });

  it('reads --tokens-file from a Secret mounted read-only, whose file is a valid tokens file', () => {
    const args = container.args as string[];
    const path = args[args.indexOf('--tokens-file') + 1]!;
    expect(parseReplicaConfig(['--id', 'tern-0', ...args], {}).tokensFile).toBe(path);
    const mount = (container.volumeMounts as Y[]).find((m) => path.startsWith(m.mountPath + '/'));
    expect(mount?.readOnly).toBe(true);
    const volume = (podSpec.volumes as Y[]).find((v) => v.name === mount.name);
    const secret = manifest('Secret', volume.secret.secretName);
    const text = secret.stringData[path.slice(mount.mountPath.length + 1)];
    expect(typeof text).toBe('string');
    expect(() => parseTokensFile(text)).not.toThrow();
    // Readable by the replica's group (fsGroup), by nobody else.
    expect(volume.secret.defaultMode).toBe(0o440);
  });
});

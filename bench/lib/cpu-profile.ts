/**
 * Reading V8 CPU profiles (`node --cpu-prof` writes them as .cpuprofile
 * JSON) over a measured window: where a replica's wall time went, by
 * component of Tern and by function, and the merged call tree a flame graph
 * draws. Pure: the profile in, figures out.
 *
 * Sample times are V8's monotonic microseconds, the clock of
 * `process.hrtime()` in every process of the machine, so a driver can cut the
 * window it measured out of a replica's profile.
 */

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber?: number;
  scriptId?: string | number;
}

export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A measured window in profile time (µs); undefined ends are open. */
export interface Window {
  fromUs?: number;
  toUs?: number;
}

/** Components of a replica's time, tried leaf first along each sampled stack: native work is charged to the code that asked for it. */
export const COMPONENTS: readonly { name: string; frame: RegExp }[] = [
  { name: 'replication sends', frame: /\/peer\/(transport|link)\.js|node_modules\/undici\// },
  { name: 'follower: peer API', frame: /\/http\/peer-api\.js/ },
  { name: 'forwarding', frame: /\/http\/forward(ed-appends)?\.js|\/peer\/(append-forwarder|forwarded-appends)\.js/ },
  { name: 'flusher + S3 client', frame: /\/flusher\/|node_modules\/@aws-sdk\/|node_modules\/@smithy\// },
  { name: 'etcd client', frame: /\/fencing\/|node_modules\/(etcd3|@grpc|protobufjs|@protobufjs)\// },
  { name: 'metrics', frame: /prom-client|\/replica\/metrics\.js/ },
  { name: 'logging', frame: /node_modules\/(pino|sonic-boom|thread-stream)/ },
  // The replication format counts with the core it encodes, as when it lived in quorum/ (results stay comparable).
  { name: 'quorum (pure core)', frame: /\/quorum\/|\/peer\/wire\.js/ },
  { name: 'replica', frame: /\/replica\// },
  { name: 'client API handlers', frame: /\/http\// },
  { name: 'HTTP server (node:http + fastify)', frame: /node:_http_|node_modules\/(fastify|find-my-way|fast-json-stringify|avvio|ajv|@fastify)/ },
];

/** V8's pseudo-frames: kept as their own rows. */
const PSEUDO = new Set(['(idle)', '(garbage collector)', '(program)']);
export const UNATTRIBUTED = 'other (Node.js internals, start-up)';

export interface Share {
  name: string;
  us: number;
  /** Of the window's sampled wall time. */
  pct: number;
}

/** Nodes by id and parent links by id: what walking a sample's stack needs. */
function indexNodes(profile: CpuProfile): { byId: Map<number, ProfileNode>; parent: Map<number, number> } {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  return { byId: new Map(profile.nodes.map((n) => [n.id, n])), parent };
}

/** Calls `visit(nodeId, µs)` for each sample inside the window; a sample lasts until the next one. */
function forEachSample(profile: CpuProfile, window: Window, visit: (nodeId: number, us: number) => void): number {
  let t = profile.startTime;
  let total = 0;
  const n = profile.samples.length;
  for (let i = 0; i < n; i++) {
    t += profile.timeDeltas[i] ?? 0;
    const next = i + 1 < n ? t + (profile.timeDeltas[i + 1] ?? 0) : profile.endTime;
    const from = Math.max(t, window.fromUs ?? -Infinity);
    const to = Math.min(next, window.toUs ?? Infinity);
    if (to <= from) continue;
    visit(profile.samples[i]!, to - from);
    total += to - from;
  }
  return total;
}

function sharesOf(acc: Map<string, number>, total: number): Share[] {
  return [...acc]
    .map(([name, us]) => ({ name, us, pct: total > 0 ? (100 * us) / total : 0 }))
    .sort((a, b) => b.us - a.us);
}

/** Wall time of the window by component (COMPONENTS, the pseudo-frames, UNATTRIBUTED), largest first. */
export function componentShares(profile: CpuProfile, window: Window = {}): Share[] {
  const { byId, parent } = indexNodes(profile);
  const componentOf = new Map<number, string>();
  const classify = (id: number): string => {
    const known = componentOf.get(id);
    if (known !== undefined) return known;
    const leaf = byId.get(id)!.callFrame;
    let name: string | undefined = PSEUDO.has(leaf.functionName) ? leaf.functionName : undefined;
    for (let cur: number | undefined = id; name === undefined && cur !== undefined; cur = parent.get(cur)) {
      const url = byId.get(cur)!.callFrame.url;
      name = COMPONENTS.find((c) => c.frame.test(url))?.name;
    }
    componentOf.set(id, name ?? UNATTRIBUTED);
    return name ?? UNATTRIBUTED;
  };
  const acc = new Map<string, number>();
  const total = forEachSample(profile, window, (id, us) => {
    const c = classify(id);
    acc.set(c, (acc.get(c) ?? 0) + us);
  });
  return sharesOf(acc, total);
}

/** "name file:line" with node_modules and build paths shortened: what a reader recognises. */
export function frameLabel(f: CallFrame): string {
  const name = f.functionName || '(anonymous)';
  if (!f.url) return name;
  const file = f.url
    .replace(/^file:\/\//, '')
    .replace(/.*\/node_modules\//, '')
    .replace(/.*\/dist\//, '');
  return `${name} ${file}:${f.lineNumber + 1}`;
}

/** Self time by function (samples whose leaf it is), largest first. */
export function selfTimes(profile: CpuProfile, window: Window = {}): Share[] {
  const { byId } = indexNodes(profile);
  const acc = new Map<string, number>();
  const total = forEachSample(profile, window, (id, us) => {
    const label = frameLabel(byId.get(id)!.callFrame);
    acc.set(label, (acc.get(label) ?? 0) + us);
  });
  return sharesOf(acc, total);
}

/** A call tree merged by frame label along each path: a flame graph's boxes. */
export interface FlameNode {
  label: string;
  /** Inclusive wall time in the window. */
  us: number;
  children: FlameNode[];
}

export function flameTree(profile: CpuProfile, window: Window = {}): FlameNode {
  const { byId, parent } = indexNodes(profile);
  const root: FlameNode = { label: 'all', us: 0, children: [] };
  const index = new Map<FlameNode, Map<string, FlameNode>>();
  const child = (node: FlameNode, label: string): FlameNode => {
    let kids = index.get(node);
    if (!kids) index.set(node, (kids = new Map()));
    let c = kids.get(label);
    if (!c) {
      c = { label, us: 0, children: [] };
      kids.set(label, c);
      node.children.push(c);
    }
    return c;
  };
  forEachSample(profile, window, (id, us) => {
    const path: string[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (f.functionName !== '(root)') path.push(frameLabel(f));
    }
    root.us += us;
    let node = root;
    for (let i = path.length - 1; i >= 0; i--) {
      node = child(node, path[i]!);
      node.us += us;
    }
  });
  const sort = (n: FlameNode): void => {
    n.children.sort((a, b) => b.us - a.us);
    n.children.forEach(sort);
  };
  sort(root);
  return root;
}

/**
 * CI's quick pass of jepsen-lite: every nemesis once, on a seed that changes
 * from run to run (JEPSEN_SEED repeats one), against a real cluster. A
 * failing run keeps its report directory and names it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_NEMESES } from './nemesis.js';
import { runJepsen } from './run.js';

describe('jepsen-lite quick pass', () => {
  it('runs every nemesis once against a real cluster, half the clients idempotent producers that retry until answered: no anomaly (no duplicate), every idempotent append answered, and the cluster serves every log again after healing', async () => {
    const seed = Number(process.env.JEPSEN_SEED ?? Date.now() % 1_000_000);
    const outDir = mkdtempSync(join(tmpdir(), 'tern-jepsen-report-'));
    console.log(`jepsen-lite quick pass: seed ${seed} (JEPSEN_SEED=${seed} repeats it), report in ${outDir}`);
    const result = await runJepsen(
      { nemeses: [...DEFAULT_NEMESES], rounds: 1, timeS: 0, seed, logs: 2, clientsPerLog: 4, producers: 'mixed', faultMs: 4000, quietMs: 2000, healS: 4, outDir },
      (line) => console.log(line),
    );
    for (const n of result.nemeses) console.log(`${n.nemesis}: ok ${n.ok} fail ${n.fail} info ${n.info}, longest unavailable ${Math.round(n.longestUnavailableMs)} ms`);

    const anomalies = Object.entries(result.verdict.logs).flatMap(([log, v]) => v.anomalies.map((a) => `${log} ${a.kind}: ${a.detail}`));
    expect(anomalies, `anomalies (seed ${seed}, report ${outDir})`).toEqual([]);
    expect(result.liveness, `liveness (seed ${seed}, report ${outDir})`).toEqual([]);
    expect(new Set(result.faults.map((f) => f.nemesis))).toEqual(new Set(DEFAULT_NEMESES));
    for (const v of Object.values(result.verdict.logs)) {
      expect(v.counts.ok).toBeGreaterThan(0);
      expect(v.counts.finalEntries).toBeGreaterThanOrEqual(v.counts.ok);
    }
    expect(result.valid).toBe(true);
    rmSync(outDir, { recursive: true, force: true });
  }, 15 * 60_000);
});

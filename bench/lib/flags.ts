/**
 * Command-line flags of the benchmark commands: every flag is a string (or a
 * boolean switch), checked here with a message for people; a bad flag is a
 * UsageError, which the commands turn into their usage text and exit code 2.
 */
import { parseArgs } from 'node:util';

export class UsageError extends Error {}

/** Parses `--name value` flags (and `booleans` as switches, plus -h/--help); throws UsageError on anything else. */
export function parseFlags(argv: readonly string[], names: readonly string[], booleans: readonly string[] = []): Record<string, string | boolean | undefined> {
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: {
        ...Object.fromEntries(names.map((n) => [n, { type: 'string' as const }])),
        ...Object.fromEntries(booleans.map((n) => [n, { type: 'boolean' as const }])),
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
    return values as Record<string, string | boolean | undefined>;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** A numeric flag within [min, max] (an integer when `integer`), or `def` when absent. */
export function numberFlag(flag: string, raw: string | undefined, def: number, min: number, max: number, integer: boolean): number {
  if (raw === undefined) return def;
  const n = (integer ? /^\d+$/ : /^\d+(\.\d+)?$/).test(raw) ? Number(raw) : NaN;
  if (!(n >= min && n <= max)) throw new UsageError(`--${flag} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}], got "${raw}"`);
  return n;
}

/**
 * The parsed options, or the exit code a command returns at once: 0 after
 * printing the usage for --help, 2 after printing what is wrong with a flag.
 */
export function optionsOrExitCode<T>(command: string, usage: string, parse: () => T | 'help'): T | number {
  let options: T | 'help';
  try {
    options = parse();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`${command}: ${err.message}\n\n${usage}`);
    return 2;
  }
  if (options === 'help') {
    console.log(usage);
    return 0;
  }
  return options;
}

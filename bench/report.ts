/** One measured figure: `key` is its name at the top level of the JSON report. */
export interface Figure {
  key: string;
  section: string;
  label: string;
  value: number | string | null;
  unit: string;
}

export interface BenchContext {
  quick: boolean;
  /** A scratch directory, removed after the run. */
  tmp: string;
  /** Progress for the operator, on stderr. */
  progress(line: string): void;
  /** A figure measured earlier in this run, or null. */
  earlier(key: string): number | null;
}

export function figure(section: string, key: string, label: string, value: number | string | null, unit = ''): Figure {
  return { key, section, label, value, unit };
}

function show(value: Figure['value']): string {
  if (value === null) return 'n/a';
  if (typeof value === 'string') return value;
  if (Number.isInteger(value)) return value.toLocaleString('en-US');
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 1 ? 2 : 4;
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** An aligned text table, one row per figure, grouped by section. */
export function table(figures: Figure[]): string {
  const rows = figures.map((f) => [f.section, f.label, show(f.value), f.unit]);
  const head = ['section', 'figure', 'value', 'unit'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

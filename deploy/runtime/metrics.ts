import { Counter, Gauge, Registry } from 'prom-client';

/**
 * A Prometheus registry whose metrics read a component's counters at scrape time, so the
 * hot paths pay a few additions, never a metrics call. The stats are read once per scrape.
 */
export function statsRegistry<S>(stats: () => S) {
  const registry = new Registry();
  let current = stats();
  const refresh = () => {
    current = stats();
  };
  return {
    registry,
    counter(name: string, help: string, read: (s: S) => number) {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          refresh();
          this.reset();
          this.inc(read(current));
        },
      });
    },
    byLabel(name: string, help: string, label: string, read: (s: S) => Record<string, number>) {
      new Counter({
        name,
        help,
        labelNames: [label],
        registers: [registry],
        collect() {
          refresh();
          this.reset();
          for (const [value, n] of Object.entries(read(current))) this.inc({ [label]: value }, n);
        },
      });
    },
    gauge(name: string, help: string, read: (s: S) => number | null) {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          refresh();
          const value = read(current);
          if (value === null) this.reset();
          else this.set(value);
        },
      });
    },
  };
}

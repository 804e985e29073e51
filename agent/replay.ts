import path from 'node:path';
import { createLogger } from '../deploy/runtime/log';
import { UsageError, type ParsedOptions } from '../deploy/runtime/options';
import { startAgent } from './agent';
import { droneIdOf, parseDroneTable } from './mavlink/config';
import { openMavlinkFile, type MavlinkFileSource } from './mavlink/file';
import type { MavlinkStats } from './mavlink/telemetry';
import { agentConfig, type replayOptions } from './options';

export type ReplayConfig = ParsedOptions<typeof replayOptions>;

export interface ReplaySummary {
  file: string;
  format: 'raw' | 'tlog';
  points: number;
  /** Position reports not made into points: downsampled or repeated. */
  skipped: number;
  /** Damage: frames with a bad CRC, and a truncated last frame. */
  errors: number;
  committed: number;
  interrupted: boolean;
  /** True once the sink has committed every point read. */
  drained: boolean;
  seconds: number;
  stats: MavlinkStats;
}

/**
 * Imports a MAVLink .tlog or raw stream through an agent: the points keep the log's event
 * times, however old, and the call returns once the sink has committed them all, or once
 * `interrupt` resolves and what was read so far is drained.
 */
export async function replay(file: string, options: ReplayConfig, interrupt: Promise<unknown>): Promise<ReplaySummary> {
  const started = performance.now();
  const log = createLogger(options.logLevel, 'agent', options.logFormat);
  // The agent gets the link's options (spool, batching, broker); its live-only ones keep their
  // defaults, all off: no HTTP (so no health or skew check), no simulator, no UDP.
  const { config: _file, json: _json, start, realtime, drainTimeout, progress, mavlinkHz, ...link } = options;
  const config = agentConfig(link);
  let seqOf: ((droneId: string) => number) | null = null;
  let source: MavlinkFileSource;
  try {
    source = await openMavlinkFile({
      file,
      droneId: droneIdOf(options.gateway, parseDroneTable(options.mavlinkDrones ?? '')),
      hz: mavlinkHz,
      // The agent hands over its seqs before it starts the source, and nothing is read before.
      firstSeq: (droneId) => seqOf!(droneId),
      startUs: start === undefined ? undefined : Date.parse(start) * 1000,
      realtime,
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(e.code ? `cannot read ${file}: ${e.code}` : e.message);
  }
  const agent = await startAgent(config, log, [
    (ctx) => {
      seqOf = ctx.firstSeq;
      return source;
    },
  ]);
  const progressLines = setInterval(() => {
    const pct = source.size === 0 ? 100 : Math.floor((100 * source.position) / source.size);
    process.stderr.write(`replay: ${pct}% of ${path.basename(file)} read, ${source.emitted} points, ${agent.stats().pointsAcked} committed\n`);
  }, progress * 1000);
  let interrupted = false;
  try {
    await Promise.race([
      source.done,
      interrupt.then(() => {
        interrupted = true;
      }),
    ]);
    const drained = await agent.drain(drainTimeout * 1000);
    // A read error surfaces here, after what was read is drained.
    await source.done;
    const stats = source.stats();
    return {
      file,
      format: source.format,
      points: source.emitted,
      skipped: stats.skipped.downsampled + stats.skipped.duplicate + stats.skipped.paused,
      errors: stats.badCrc + stats.truncated,
      committed: agent.stats().pointsAcked,
      interrupted,
      drained,
      seconds: (performance.now() - started) / 1000,
      stats,
    };
  } finally {
    clearInterval(progressLines);
    await agent.close();
  }
}

export function formatSummary(s: ReplaySummary): string {
  const m = s.stats;
  return (
    `${s.interrupted ? 'interrupted' : 'replayed'} ${s.file} (${s.format}): points ${s.points}, skipped ${s.skipped}, errors ${s.errors}, committed ${s.committed} in ${s.seconds.toFixed(1)} s ` +
    `(packets ${m.packets}, no fix ${m.noFix}, downsampled ${m.skipped.downsampled}, duplicate ${m.skipped.duplicate}, bad CRC ${m.badCrc}, truncated ${m.truncated}, garbage bytes ${m.garbageBytes}, unknown messages ${m.unknownMessages})\n`
  );
}

import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';

/**
 * telemetry.proto, the one source of truth, as protobufjs's JSON descriptor. Run from the
 * sources (tests, the build), this module parses the .proto; the build (tsup.config.ts) runs
 * it once and bundles its result in its place, so the built CLI neither carries nor runs
 * protobufjs's parser, whose tokenizer is hot enough at start to wake V8's optimizing
 * compiler (invariant 6: a gateway's agent's memory).
 */
export const DESCRIPTOR: protobuf.INamespace = protobuf
  .parse(readFileSync(new URL('./telemetry.proto', import.meta.url), 'utf8'), { keepCase: true })
  .root.toJSON();

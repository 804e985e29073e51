/**
 * A YAML (so also JSON) document's value; on bad text, an error whose message is one line,
 * the parser's first, for the caller's one-line refusal. The parser is imported on the first
 * document, so a command without one never loads it (invariant 6: it is megabytes of a
 * gateway agent's memory), and bundled, so loading it resolves no files from node_modules:
 * resolving its fifty made V8 optimise node's path code at an agent's start.
 */
export async function parseYaml(text: string): Promise<unknown> {
  // A CommonJS module: the bundle exports its exports as default, as node does.
  const yaml = (await import('yaml')).default;
  try {
    return yaml.parse(text);
  } catch (err) {
    throw new Error((err as Error).message.split('\n')[0]!.replace(/:$/, ''));
  }
}

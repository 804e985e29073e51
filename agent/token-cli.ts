import { UsageError } from '../deploy/runtime/options';
import { addToken, parseDronePatterns, readTokens, writeTokens } from './ingest-auth';

function needId(id: string | undefined, example: string): string {
  if (id === undefined) throw new UsageError(`the token id is missing, e.g. dronelake agent token ${example}`);
  return id;
}

/** Returns what to print: the token comes last, alone on its line, and is never stored. */
export async function tokenAdd(file: string, id: string | undefined, drones: string): Promise<string> {
  const table = await readTokens(file, true);
  const patterns = parseDronePatterns(drones);
  const token = await addToken(table, needId(id, "add uploader --drones 'd-*' --http-tokens FILE"), patterns);
  await writeTokens(file, table);
  return `added token ${id} for drones ${patterns.join(',')} to ${file}\nthe token (send it as 'Authorization: Bearer TOKEN'; shown this once, only its hash is kept):\n${token}\n`;
}

export async function tokenRemove(file: string, id: string | undefined): Promise<string> {
  const table = await readTokens(file);
  if (!table.delete(needId(id, 'remove uploader --http-tokens FILE'))) throw new UsageError(`token "${id}" is not in ${file}`);
  await writeTokens(file, table);
  return `removed token ${id} from ${file}\n`;
}

/** One `id patterns` line per token, by id. */
export async function tokenList(file: string): Promise<string> {
  const table = await readTokens(file);
  const ids = [...table.keys()].sort();
  const width = Math.max(0, ...ids.map((id) => id.length));
  return ids.map((id) => `${id.padEnd(width)}  ${table.get(id)!.drones.join(',')}\n`).join('');
}

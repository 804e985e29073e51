import { UsageError } from '../deploy/runtime/options';
import { addIdentity, readRegistry, writeRegistry, type Role } from './registry';

function needId(id: string | undefined, example: string): string {
  if (id === undefined) throw new UsageError(`the identity id is missing, e.g. dronelake broker identity ${example}`);
  return id;
}

/** Returns what to print: the secret comes last, alone on its line, and is never stored. */
export async function identityAdd(file: string, id: string | undefined, role: Role): Promise<string> {
  const registry = await readRegistry(file, true);
  const secret = await addIdentity(registry, needId(id, 'add gw-017 --role gateway --registry FILE'), role);
  await writeRegistry(file, registry);
  return `added ${role} ${id} to ${file}\nits secret (the MQTT password; shown this once, only its hash is kept):\n${secret}\n`;
}

export async function identityRemove(file: string, id: string | undefined): Promise<string> {
  const registry = await readRegistry(file);
  if (!registry.delete(needId(id, 'remove gw-017 --registry FILE'))) throw new UsageError(`identity "${id}" is not in ${file}`);
  await writeRegistry(file, registry);
  return `removed ${id} from ${file}\n`;
}

/** One `id role` line per identity, by id. */
export async function identityList(file: string): Promise<string> {
  const registry = await readRegistry(file);
  const ids = [...registry.keys()].sort();
  const width = Math.max(0, ...ids.map((id) => id.length));
  return ids.map((id) => `${id.padEnd(width)}  ${registry.get(id)!.role}\n`).join('');
}

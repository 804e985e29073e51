// The import directions of the source tree (issue 23), read with the TypeScript compiler's
// own parser, so comments, strings and template text are never mistaken for imports:
// - deploy/runtime/ is the library every component uses: it never imports deploy/cli/,
//   agent/, broker/, sink/ or bench/;
// - the components (agent, broker, sink, proto) never import deploy/cli/, which imports them;
// - proto/ is the wire contract: it imports none of agent, broker, sink, deploy;
// - no import cycle among these files, type-only imports and dynamic import() included.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const DIRS = ['agent', 'broker', 'sink', 'proto', 'deploy', 'bench'];

interface Edge {
  from: string;
  to: string;
  specifier: string;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== 'node_modules') out.push(...sourceFiles(path));
    } else if (name.endsWith('.ts')) {
      out.push(path);
    }
  }
  return out;
}

/** The module specifiers one file names: static imports and re-exports (type-only too), import(), import('x').T. */
function specifiers(path: string): string[] {
  const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      found.push(node.moduleReference.expression.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      found.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** A relative specifier resolved to a repository path (posix), or undefined for a package. */
function resolveSpecifier(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const base = resolve(dirname(from), specifier);
  const candidates = [base, `${base}.ts`, join(base, 'index.ts'), base.replace(/\.js$/, '.ts')];
  const hit = candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? base;
  return relative(ROOT, hit).split(sep).join('/');
}

function edges(): { files: string[]; edges: Edge[] } {
  const files = DIRS.flatMap((d) => sourceFiles(join(ROOT, d)));
  const all: Edge[] = [];
  for (const file of files) {
    const from = relative(ROOT, file).split(sep).join('/');
    for (const specifier of specifiers(file)) {
      const to = resolveSpecifier(file, specifier);
      if (to !== undefined) all.push({ from, to, specifier });
    }
  }
  return { files: files.map((f) => relative(ROOT, f).split(sep).join('/')), edges: all };
}

const under = (path: string, ...dirs: string[]): boolean => dirs.some((d) => path.startsWith(`${d}/`));

/** The rule an import breaks, or undefined. */
export function directionViolation(from: string, to: string): string | undefined {
  if (under(from, 'deploy/runtime') && under(to, 'deploy/cli', 'agent', 'broker', 'sink', 'bench')) {
    return 'deploy/runtime/ must not import deploy/cli/, agent/, broker/, sink/ or bench/';
  }
  if (under(from, 'agent', 'broker', 'sink', 'proto') && under(to, 'deploy/cli')) {
    return 'a component must not import deploy/cli/';
  }
  if (under(from, 'proto') && under(to, 'agent', 'broker', 'sink', 'deploy')) {
    return 'proto/ must not import agent/, broker/, sink/ or deploy/';
  }
  return undefined;
}

/** Every strongly connected component of more than one file, or a file importing itself (Tarjan). */
export function cycles(nodes: string[], edgeList: Array<{ from: string; to: string }>): string[][] {
  const next = new Map<string, string[]>(nodes.map((n) => [n, []]));
  for (const e of edgeList) if (next.has(e.to)) next.get(e.from)?.push(e.to);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let counter = 0;
  const connect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (next.get(v) ?? []).includes(v)) found.push(component.sort());
    }
  };
  for (const n of nodes) if (!index.has(n)) connect(n);
  return found;
}

describe('import directions', () => {
  const graph = edges();

  it('finds the files and their imports', () => {
    // A guard against a walk that finds nothing and so passes trivially.
    expect(graph.files).toContain('deploy/cli/cli.ts');
    expect(graph.files).toContain('deploy/cli/commands.ts');
    expect(graph.files).toContain('deploy/runtime/options.ts');
    expect(graph.edges.some((e) => e.from === 'deploy/cli/commands.ts' && e.to === 'agent/agent.ts')).toBe(true);
  });

  it('the rules catch what they name', () => {
    expect(directionViolation('deploy/runtime/http.ts', 'sink/sink.ts')).toBeDefined();
    expect(directionViolation('deploy/runtime/http.ts', 'deploy/cli/up.ts')).toBeDefined();
    expect(directionViolation('sink/sink.ts', 'deploy/cli/up.ts')).toBeDefined();
    expect(directionViolation('proto/codec.ts', 'deploy/runtime/options.ts')).toBeDefined();
    expect(directionViolation('deploy/cli/up.ts', 'sink/sink.ts')).toBeUndefined();
    expect(directionViolation('sink/sink.ts', 'deploy/runtime/http.ts')).toBeUndefined();
    expect(cycles(['a', 'b', 'c'], [{ from: 'a', to: 'b' }, { from: 'b', to: 'c' }, { from: 'c', to: 'a' }])).toEqual([['a', 'b', 'c']]);
    expect(cycles(['a', 'b'], [{ from: 'a', to: 'b' }])).toEqual([]);
  });

  it('no file imports against the directions', () => {
    const broken = graph.edges.flatMap((e) => {
      const rule = directionViolation(e.from, e.to);
      return rule === undefined ? [] : [`${e.from} imports '${e.specifier}': ${rule}`];
    });
    expect(broken).toEqual([]);
  });

  it('no import cycle, type-only imports included', () => {
    const found = cycles(graph.files, graph.edges).map((c) => {
      const inCycle = new Set(c);
      const links = graph.edges.filter((e) => inCycle.has(e.from) && inCycle.has(e.to)).map((e) => `${e.from} imports '${e.specifier}'`);
      return `cycle among ${c.join(', ')}: ${[...new Set(links)].join('; ')}`;
    });
    expect(found).toEqual([]);
  });
});

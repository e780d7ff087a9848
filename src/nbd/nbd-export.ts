/**
 * What the NBD server serves: an `NbdExport` (a BlockDevice plus how to present it) and the
 * `ExportResolver` that names them. Also the metadata contexts an export offers to NBD_CMD_BLOCK_STATUS:
 *
 *   base:allocation   from `export.blockStatus` when given, else "all data" (status 0 everywhere).
 *   <namespace>:<x>   any `export.metaContexts` entry, e.g. the mirror's `umirror:sync` whose extents have
 *                     flag 1 where the regions are out of sync.
 *
 * Context ids are positions in `contextsOf(export)` plus one, stable for the life of the export object.
 * Callers: the handshake (list/select contexts, resolve names) and transmission (extents).
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../block/block-device.js';
import { baseAllocation } from './protocol.js';

/** One run of bytes with the same status flags. Lengths are positive; runs are consecutive. */
export interface NbdExtent {
  readonly lengthBytes: number;
  readonly flags: number;
}

export interface ExtentQuery {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** The client wants only the first extent (NBD_CMD_FLAG_REQ_ONE). */
  readonly reqOne: boolean;
}

/**
 * A metadata context. `extents` describes the range from `offsetBytes` on; it may cover less than
 * `lengthBytes` (the client asks again), must return at least one extent, and may return more than asked
 * (the server trims the list). May wait. @throws BlockError (mapped by toNbdError).
 */
export interface NbdMetaContext {
  /** Full name, "namespace:leaf" ("umirror:sync"). */
  readonly name: string;
  extents(query: ExtentQuery): Promise<readonly NbdExtent[]>;
}

export interface NbdExport {
  /** Export name (UTF-8, at most 4096 bytes). */
  readonly name: string;
  readonly description?: string;
  readonly device: BlockDevice;
  readonly readOnly?: boolean;
  /**
   * Advertised minimum block size: 1 (default, any byte range, since BlockDevice needs no alignment) or a
   * power of two up to 4096; requests not aligned to it fail with EINVAL.
   */
  readonly minimumBlockBytes?: number;
  /** base:allocation extents (flags: allocationFlag.hole | zero). Default: everything is data. */
  readonly blockStatus?: (query: ExtentQuery) => Promise<readonly NbdExtent[]>;
  /** Extra contexts beyond base:allocation. */
  readonly metaContexts?: readonly NbdMetaContext[];
}

/** Names the exports of a server. `get('')` is the default export, when there is one. */
export interface ExportResolver {
  list(): readonly NbdExport[];
  get(name: string): NbdExport | undefined;
}

/** A fixed set of exports; with exactly one, the empty name resolves to it too. */
export class StaticExportResolver implements ExportResolver {
  readonly #exports: ReadonlyMap<string, NbdExport>;

  constructor(exports: ReadonlyMap<string, NbdExport> | readonly NbdExport[]) {
    const map = new Map<string, NbdExport>();
    const entries: [string, NbdExport][] = isExportList(exports)
      ? exports.map((e): [string, NbdExport] => [e.name, e])
      : [...exports.entries()];
    for (const [key, value] of entries) {
      assert(key === value.name, `export map key "${key}" differs from export name "${value.name}"`);
      assert(!map.has(key), `duplicate export "${key}"`);
      map.set(key, value);
    }
    this.#exports = map;
  }

  list(): readonly NbdExport[] {
    return [...this.#exports.values()];
  }

  get(name: string): NbdExport | undefined {
    const found = this.#exports.get(name);
    if (found !== undefined) return found;
    if (name === '' && this.#exports.size === 1) return this.#exports.values().next().value;
    return undefined;
  }
}

function isExportList(value: ReadonlyMap<string, NbdExport> | readonly NbdExport[]): value is readonly NbdExport[] {
  return Array.isArray(value);
}

const allData: NbdMetaContext['extents'] = (query) =>
  Promise.resolve([{ lengthBytes: Math.max(1, query.lengthBytes), flags: 0 }]);

const contextCache = new WeakMap<NbdExport, readonly NbdMetaContext[]>();

/** The contexts of an export, base:allocation first; id = index + 1. */
export function contextsOf(nbdExport: NbdExport): readonly NbdMetaContext[] {
  const cached = contextCache.get(nbdExport);
  if (cached !== undefined) return cached;
  const base: NbdMetaContext = { name: baseAllocation, extents: nbdExport.blockStatus ?? allData };
  const contexts = [base, ...(nbdExport.metaContexts ?? [])];
  const names = new Set(contexts.map((c) => c.name));
  assert(names.size === contexts.length, `export ${nbdExport.name} has duplicate meta context names`);
  for (const context of contexts) assert(/^[^:]+:.*$/.test(context.name), `meta context "${context.name}" has no namespace`);
  contextCache.set(nbdExport, contexts);
  return contexts;
}

/**
 * Contexts matching one query (the spec's rules): "ns:" matches every context of the namespace,
 * "ns:leaf" matches that context exactly. An empty query list in LIST means all contexts.
 */
export function matchContexts(contexts: readonly NbdMetaContext[], query: string): NbdMetaContext[] {
  const colon = query.indexOf(':');
  if (colon < 0) return [];
  if (colon === query.length - 1) return contexts.filter((c) => c.name.startsWith(query));
  return contexts.filter((c) => c.name === query);
}

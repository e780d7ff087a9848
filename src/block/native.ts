/**
 * The native addon (native/umirror-native.c, built by node-gyp at `npm ci`, see scripts/build-native.mjs):
 * OFD byte-range locks for image-lock.ts and buffer addresses / statx alignment for direct-io.ts. Node
 * exposes neither.
 *
 * Loading is lazy: only a device opened with a lock or with O_DIRECT needs the addon, so the library, the
 * tests of other parts and `umirror create-images` run without it. A missing or broken build is an
 * operating error (BlockError EIO naming the fix), not a crash.
 *
 * Where it is: native/build/Release/umirror_native.node under the package root. This module runs from
 * dist/block/ (the package) or build/src/block/ (the test build), so the root is searched upwards.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlockError } from '../errors.js';

export interface NativeAddon {
  /** F_OFD_SETLK: 0, or the errno (EAGAIN/EACCES when a conflicting lock is held). type: 0 unlock, 1 read, 2 write. */
  setLock(fd: number, type: 0 | 1 | 2, start: number, length: number): number;
  /** F_OFD_GETLK: 0 free, 1 another open file description holds a conflicting lock, -errno on failure. */
  testLock(fd: number, type: 1 | 2, start: number, length: number): number;
  /** The address of the view's first byte modulo `align` (a power of two). */
  addressMod(view: Uint8Array, align: number): number;
  /** statx(STATX_DIOALIGN): [memoryAlign, offsetAlign] ([0, 0]: no direct I/O), or null when unknown. */
  dioAlign(fd: number): [number, number] | null;
}

const addonRelativePath = join('native', 'build', 'Release', 'umirror_native.node');
/** Directories searched upwards from this module for the package root. */
const rootSearchDepthMax = 5;

let loaded: NativeAddon | undefined;

/** The addon, loaded on first use. @throws BlockError EIO when it is not built or does not load. */
export function nativeAddon(): NativeAddon {
  if (loaded !== undefined) return loaded;
  const path = findAddon();
  if (path === undefined) {
    throw new BlockError('EIO', `umirror's native addon is not built (${addonRelativePath}); run "npm ci" or "npm run build:native"`);
  }
  let value: unknown;
  try {
    value = createRequire(import.meta.url)(path);
  } catch (err) {
    throw new BlockError('EIO', `umirror's native addon ${path} does not load: ${err instanceof Error ? err.message : String(err)}; run "npm run build:native"`, { cause: err });
  }
  loaded = checkAddon(value, path);
  return loaded;
}

function findAddon(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < rootSearchDepthMax; depth += 1) {
    const candidate = join(dir, addonRelativePath);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return undefined;
}

/** The decode boundary: the module must export the four functions (an old build would not). */
function checkAddon(value: unknown, path: string): NativeAddon {
  const names = ['setLock', 'testLock', 'addressMod', 'dioAlign'] as const;
  if (typeof value !== 'object' || value === null || !names.every((name) => typeof (value as Record<string, unknown>)[name] === 'function')) {
    throw new BlockError('EIO', `umirror's native addon ${path} is out of date; run "npm run build:native"`);
  }
  return value as NativeAddon;
}

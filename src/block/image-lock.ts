/**
 * Image locks: one process, one device per leg or log image. A process that opens an image read-write
 * for a device takes qemu's lock on it, so a second `umirror serve` or daemon on the same images, a
 * running qemu-nbd/qemu-io/VM, and (inside one daemon) a second device on the same file are refused
 * before anything is read, resumed or served. Read-only openers take no lock.
 *
 * Mechanism: open file description locks (fcntl F_OFD_SETLK, native/umirror-native.c) on one descriptor
 * per image that this module opens and keeps. The kernel drops them when that descriptor is closed,
 * including by kill -9: there are no lock files, so nothing goes stale.
 *
 * Protocol: qemu's (block/file-posix.c), so qemu and umirror see each other. qemu maps each permission
 * bit i (0 consistent read, 1 write, 2 write unchanged, 3 resize) to two bytes: byte 100+i read-locked
 * means "I hold permission i", byte 200+i read-locked means "I do not let others hold permission i".
 * Taking the lock is: read-lock my bytes, then test (F_OFD_GETLK as a write lock) that no one else holds
 * a byte that contradicts mine; on a conflict, close (which drops what was locked) and refuse.
 *
 *   byte   100 (read)   101 (write)   201 (write not shared)   203 (resize not shared)
 *   umirror  locked       locked          locked                    locked
 *   test     200, 201 free (nobody refuses my read/write)   101, 103 free (nobody writes or resizes)
 *
 * So like a qemu writer with share-rw=off: `qemu-io` on a served image fails with its "Failed to get
 * "write" lock ... Is another process using the image?", `qemu-img info -U` / `qemu-io -U -r` still
 * read it, and umirror refuses an image that qemu-nbd or qemu-io has open for writing.
 *
 * Within one process: a table reload opens its images again while the live table holds them, so the
 * lock is shared per holder (a device name): the first open of an image takes it, later opens by the
 * same holder count a reference, opens by another holder are refused, and the last release closes the
 * descriptor. Entries are keyed by file identity (st_dev and st_ino; st_rdev for block devices), so two
 * spellings of one path are one image. States: locking -> held -> closing -> gone; an acquirer that
 * finds an entry closing waits for the close, so the old descriptor cannot make it see a conflict.
 */
import { constants as fsConstants } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { open, type FileHandle } from 'node:fs/promises';
import { assert } from '../assert.js';
import { BlockError, toBlockError } from '../errors.js';
import { rethrowProgrammerError } from '../fail-fast.js';
import { nativeAddon, type NativeAddon } from './native.js';

/** qemu's lock byte bases (block/file-posix.c RAW_LOCK_PERM_BASE, RAW_LOCK_SHARED_BASE). */
const permBaseByte = 100;
const sharedBaseByte = 200;
/** qemu's permission bits we hold (BLK_PERM_CONSISTENT_READ, BLK_PERM_WRITE) ... */
const permsHeld = [0, 1] as const;
/** ... and those we do not share with anyone else (BLK_PERM_WRITE, BLK_PERM_RESIZE). */
const permsUnshared = [1, 3] as const;
const lockRead = 1;
const lockWrite = 2;

/** A failed lock: EBUSY when another process or device holds the image, EIO when locking itself failed. */
export class ImageLockError extends BlockError {
  constructor(code: 'EBUSY' | 'EIO', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ImageLockError';
  }
}

/** The ImageLockError somewhere in an error's cause chain (table errors wrap the open's error). */
export function findImageLockError(err: unknown): ImageLockError | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth += 1) {
    if (current instanceof ImageLockError) return current;
    current = current instanceof Error ? current.cause : undefined;
  }
  return undefined;
}

/** One image's reference to the process's lock; release() once when the device closes. */
export interface ImageLock {
  release(): Promise<void>;
}

interface Entry {
  readonly holder: string;
  readonly path: string;
  refs: number;
  /** Resolves once the lock is held; rejects (and the entry is gone) when it could not be taken. */
  readonly ready: Promise<FileHandle>;
  /** Set once the last reference was released: resolves when the descriptor is closed. */
  closing: Promise<void> | undefined;
}

const entries = new Map<string, Entry>();

/**
 * Takes (or shares, for the same holder) the lock on the image `path` whose identity is `key`.
 * @throws ImageLockError EBUSY (held by another process or another device of this one), EIO (the
 * lock could not be taken: no addon, a file system without locks, the file changed while opening).
 */
export async function lockImage(options: { path: string; key: string; holder: string }): Promise<ImageLock> {
  for (;;) {
    const existing = entries.get(options.key);
    if (existing === undefined) break;
    if (existing.closing !== undefined) {
      await existing.closing;
      continue;
    }
    if (existing.holder !== options.holder) {
      throw new ImageLockError('EBUSY', `${options.path} is in use by device ${existing.holder} (lock held)`);
    }
    existing.refs += 1;
    try {
      await existing.ready;
    } catch (err) {
      existing.refs -= 1;
      throw err;
    }
    return reference(options.key, existing);
  }
  let addon: NativeAddon;
  try {
    addon = nativeAddon();
  } catch (err) {
    rethrowProgrammerError(err);
    throw new ImageLockError('EIO', `Cannot lock ${options.path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const entry: Entry = { holder: options.holder, path: options.path, refs: 1, ready: takeLock(addon, options), closing: undefined };
  entries.set(options.key, entry);
  try {
    await entry.ready;
  } catch (err) {
    if (entries.get(options.key) === entry) entries.delete(options.key);
    throw err;
  }
  return reference(options.key, entry);
}

/** Holders of image locks in this process, by path (for tests and messages). */
export function heldImageLocks(): { path: string; holder: string; refs: number }[] {
  return [...entries.values()].filter((e) => e.closing === undefined).map((e) => ({ path: e.path, holder: e.holder, refs: e.refs }));
}

function reference(key: string, entry: Entry): ImageLock {
  let released = false;
  return {
    release: async (): Promise<void> => {
      assert(!released, 'an image lock reference is released once');
      released = true;
      assert(entry.refs > 0, 'image lock references never go negative');
      entry.refs -= 1;
      if (entry.refs > 0) return;
      entry.closing = entry.ready.then((handle) => handle.close());
      try {
        await entry.closing;
      } finally {
        if (entries.get(key) === entry) entries.delete(key);
      }
    },
  };
}

async function takeLock(addon: NativeAddon, options: { path: string; key: string }): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(options.path, fsConstants.O_RDONLY);
  } catch (err) {
    throw new ImageLockError('EIO', `Cannot lock ${options.path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    const stat = await handle.stat({ bigint: true });
    if (fileKey(stat) !== options.key) throw new ImageLockError('EIO', `Cannot lock ${options.path}: the file was replaced while it was opened`);
    const fd = handle.fd;
    for (const perm of permsHeld) lockByte(addon, { fd, byte: permBaseByte + perm, path: options.path });
    for (const perm of permsUnshared) lockByte(addon, { fd, byte: sharedBaseByte + perm, path: options.path });
    // Someone else refuses to share what we hold, or holds what we refuse to share: qemu's check.
    const contradicting = [...permsHeld.map((perm) => sharedBaseByte + perm), ...permsUnshared.map((perm) => permBaseByte + perm)];
    for (const byte of contradicting) {
      const held = addon.testLock(fd, lockWrite, byte, 1);
      if (held < 0) throw new ImageLockError('EIO', `Cannot lock ${options.path}: testing byte ${byte} failed with errno ${-held}`);
      if (held === 1) throw inUse(options.path);
    }
    return handle;
  } catch (err) {
    await handle.close().catch(rethrowProgrammerError); // Closing drops whatever was locked; the lock error is the one to report.
    rethrowProgrammerError(err);
    throw err instanceof ImageLockError ? err : toBlockError(err, `Cannot lock ${options.path}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function lockByte(addon: NativeAddon, options: { fd: number; byte: number; path: string }): void {
  const errno = addon.setLock(options.fd, lockRead, options.byte, 1);
  if (errno === 0) return;
  // EAGAIN/EACCES: someone holds a write lock over the byte (another program's whole-file lock, say).
  if (errno === osConstants.errno.EAGAIN || errno === osConstants.errno.EACCES) throw inUse(options.path);
  throw new ImageLockError('EIO', `Cannot lock ${options.path}: locking byte ${options.byte} failed with errno ${errno}`);
}

function inUse(path: string): ImageLockError {
  return new ImageLockError('EBUSY', `${path} is in use by another process (lock held)`);
}

/** An open file's identity for the lock table: the device for block devices, else st_dev + st_ino. */
export function fileKey(stat: { isBlockDevice(): boolean; dev: bigint; ino: bigint; rdev: bigint }): string {
  return stat.isBlockDevice() ? `b:${stat.rdev}` : `f:${stat.dev}:${stat.ino}`;
}

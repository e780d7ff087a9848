/**
 * The device NBD serves, over memory devices, for the BlockDevice conformance suite: a MappedDevice whose
 * table has four lines built by the daemon's own targetBuilder,
 *
 *   0      127    linear  head 1                          (an offset on its device)
 *   127    c      mirror  core 1 64 2 c0 0 c1 0
 *   127+c  d      mirror  disk 2 log 64 2 d0 0 d1 0
 *   ...    129    linear  tail 0
 *
 * so segment boundaries fall off every 4 KiB boundary and requests split across targets. The memory
 * devices are reached through shared() handles, so they outlive the MappedDevice: `reopen` builds a second
 * MappedDevice over the same devices (a table reload after a restart) and sees what the first wrote, the
 * disk log's state included (a close is a flushing suspend, so the reload must find that log clean).
 * Both mirrors are in sync when the device is returned.
 */
import assert from 'node:assert/strict';
import type { BlockDevice } from '../../src/block/block-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { targetBuilder } from '../../src/control/build-target.js';
import { sectorBytes } from '../../src/limits.js';
import { MirrorSet } from '../../src/mirror/mirror-set.js';
import { MappedDevice } from '../../src/target/mapped-device.js';
import { shared, waitInSync } from './mirror-fixture.js';

export interface MappedStack {
  readonly device: MappedDevice;
  readonly table: string;
  /** The memory devices under the table, by table name. */
  readonly backing: ReadonlyMap<string, MemoryBlockDevice>;
}

const headSectors = 127;
const tailSectors = 129;
const stacks = new WeakMap<BlockDevice, MappedStack>();

function layout(sizeBytes: number): { table: string; devices: [string, number][] } {
  const lengthSectors = sizeBytes / sectorBytes;
  if (!Number.isSafeInteger(lengthSectors) || lengthSectors < headSectors + tailSectors + 4) {
    throw new RangeError(`mappedMirrorStack needs whole sectors, at least ${headSectors + tailSectors + 4}, got ${sizeBytes} bytes`);
  }
  const middle = lengthSectors - headSectors - tailSectors;
  const core = Math.floor(middle / 2);
  const disk = middle - core;
  const table = [
    `0 ${headSectors} linear head 1`,
    `${headSectors} ${core} mirror core 1 64 2 c0 0 c1 0`,
    `${headSectors + core} ${disk} mirror disk 2 log 64 2 d0 0 d1 0`,
    `${headSectors + core + disk} ${tailSectors} linear tail 0`,
  ].join('\n');
  const devices: [string, number][] = [
    ['head', headSectors + 1],
    ['c0', core],
    ['c1', core],
    ['d0', disk],
    ['d1', disk],
    ['log', 2048],
    ['tail', tailSectors],
  ];
  return { table, devices };
}

async function build(options: { sizeBytes: number; backing?: ReadonlyMap<string, MemoryBlockDevice> }): Promise<MappedStack> {
  const { table, devices } = layout(options.sizeBytes);
  const backing =
    options.backing ?? new Map(devices.map(([name, sectors]) => [name, new MemoryBlockDevice({ sizeBytes: sectors * sectorBytes, name })]));
  const open = (name: string): Promise<BlockDevice> => {
    const device = backing.get(name);
    return device === undefined ? Promise.reject(new Error(`no device ${name}`)) : Promise.resolve(shared(device));
  };
  const device = new MappedDevice({ name: 'vol', buildTarget: targetBuilder({ resolver: { open } }) });
  await device.load(table);
  await device.resume();
  for (const segment of device.segments()) {
    const mirror = segment.target;
    if (!(mirror instanceof MirrorSet)) continue;
    // MappedDevice.close is a flushing suspend: a reload finds the disk log clean, with nothing to resync.
    if (options.backing !== undefined && mirror.log.type === 'disk') {
      assert.equal(mirror.syncCount(), mirror.regionCount, 'the disk log was left clean by the close');
    }
    await waitInSync(mirror);
  }
  const stack: MappedStack = { device, table, backing };
  stacks.set(device, stack);
  return stack;
}

/** A fresh stack of `sizeBytes` over new, zeroed memory devices. */
export function mappedMirrorStack(options: { sizeBytes: number }): Promise<MappedStack> {
  return build(options);
}

/** A new MappedDevice with the same table over the devices of `closed` (made by mappedMirrorStack). */
mappedMirrorStack.reopen = async (closed: BlockDevice): Promise<MappedDevice> => {
  const stack = stacks.get(closed);
  if (stack === undefined) throw new TypeError('reopen: not a device of mappedMirrorStack');
  return (await build({ sizeBytes: closed.sizeBytes, backing: stack.backing })).device;
};

/**
 * A child process for test/unit/programmer-errors.test.ts: a mirror set whose leg (mode `leg-write`)
 * or disk-log device (mode `log-flush`) throws a TypeError, which is a bug, not an I/O error. The
 * failing call runs in detached work (the worker pass, a leg write), so the only right outcome is the
 * fail-fast policy: the TypeError is uncaught, Node prints it and exits with status 1.
 *
 * If the error is instead handled as an operating error, the write completes and the child prints the
 * state it left behind ("survived: <status>") and exits 0; the parent treats that as the bug.
 *
 *   node programmer-error-child.js leg-write|log-flush
 */
import type { BlockDevice } from '../../src/block/block-device.js';
import { forwardingDevice, type DeviceOp } from '../../src/block/forwarding-device.js';
import { MemoryBlockDevice } from '../../src/block/memory-block-device.js';
import { sectorBytes } from '../../src/limits.js';
import { createMirrorSet } from '../../src/mirror/create-mirror-set.js';
import { waitInSync } from './mirror-fixture.js';

const mode = process.argv[2];
if (mode !== 'leg-write' && mode !== 'log-flush') throw new Error(`usage: programmer-error-child leg-write|log-flush, got ${String(mode)}`);
const lengthSectors = 1024;
const armed = { on: false };
const brokenOp: DeviceOp = mode === 'leg-write' ? 'write' : 'flush';
const brokenDevice = mode === 'leg-write' ? 'l1' : 'log';

function open(name: string): Promise<BlockDevice> {
  const memory = new MemoryBlockDevice({ sizeBytes: name === 'log' ? 1024 * 1024 : lengthSectors * sectorBytes, name });
  return Promise.resolve(
    forwardingDevice(memory, {
      around: (op, _bytes, run) => {
        // A rejection, as a bug inside an async device method gives (not a synchronous throw).
        if (armed.on && name === brokenDevice && op === brokenOp) return Promise.reject(new TypeError(`injected: ${name} ${op} bug`));
        return run();
      },
    }),
  );
}

const safety = setTimeout(() => {
  console.log('timeout');
  process.exit(3);
}, 10_000);

const log = mode === 'leg-write' ? 'core 1 128' : 'disk 2 log 128';
const mirror = await createMirrorSet({ args: `${log} 2 l0 0 l1 0`.split(' '), lengthSectors, openDevice: open });
mirror.onEvent((event) => console.log(`event ${JSON.stringify(event)}`));
await mirror.resume();
await waitInSync(mirror);
armed.on = true;
console.log('armed');
const outcome = await mirror.write(0, Buffer.alloc(4096, 1)).then(
  () => 'ok',
  (err: unknown) => String(err),
);
// Let any detached work run, then report what the bug turned into.
await new Promise((resolve) => setTimeout(resolve, 100));
console.log(`survived: write ${outcome}, status ${mirror.statusInfo()}`);
clearTimeout(safety);

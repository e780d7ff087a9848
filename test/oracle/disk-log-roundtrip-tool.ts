/**
 * Host side of the disk-log round trip with the real kernel (test/oracle/disk-log-roundtrip.sh).
 *   write-clean IMG      writes a clean log for a 16 MiB mirror (32768 sectors, 1024-sector regions) as
 *                        DiskDirtyLog does after a full resync and a clean suspend
 *   check IMG N DIRTY... loads IMG as the kernel left it and checks syncCount === N - (dirty regions)
 *                        and that exactly the listed regions are out of sync
 * Not a test file: the shell script runs it before and after the VM.
 */
import { DiskDirtyLog } from '../../src/dirty-log/disk-dirty-log.js';
import { FileBlockDevice } from '../../src/block/file-block-device.js';

const regionCount = 32;
const regionSizeSectors = 1024;

async function openLog(path: string): Promise<DiskDirtyLog> {
  return new DiskDirtyLog({
    device: await FileBlockDevice.open(path),
    displayName: path,
    regionCount,
    regionSizeSectors,
    syncMode: 'default',
    flushData: () => Promise.resolve(),
    raiseEvent: () => undefined,
    onWarning: (line) => console.error(`warning: ${line}`),
  });
}

async function writeClean(path: string): Promise<void> {
  const log = await openLog(path);
  await log.resume();
  for (let r = log.getResyncWork(); r !== null; r = log.getResyncWork()) {
    log.setRegionSync(r, true);
    log.clearRegion(r);
  }
  await log.flush();
  await log.presuspend();
  await log.postsuspend();
  console.log(`write-clean: ${path}: ${log.syncCount()}/${regionCount}, health ${log.health}`);
  await log.close();
}

async function check(path: string, expectedRegions: number, dirty: number[]): Promise<boolean> {
  const log = await openLog(path);
  await log.resume();
  const outOfSync: number[] = [];
  for (let r = 0; r < log.regionCount; r++) if (!log.inSync(r)) outOfSync.push(r);
  const ok =
    log.regionCount === expectedRegions &&
    log.syncCount() === expectedRegions - dirty.length &&
    log.health === 'A' &&
    outOfSync.join(',') === dirty.join(',');
  console.log(
    `check: ${path}: ${log.syncCount()}/${log.regionCount} health ${log.health} out of sync [${outOfSync.join(',')}]` +
      ` expected [${dirty.join(',')}]: ${ok ? 'OK' : 'MISMATCH'}`,
  );
  await log.close();
  return ok;
}

const [command, path, ...rest] = process.argv.slice(2);
if (command === 'write-clean' && path !== undefined) {
  await writeClean(path);
} else if (command === 'check' && path !== undefined) {
  const ok = await check(path, Number(rest[0] ?? regionCount), rest.slice(1).map(Number));
  process.exitCode = ok ? 0 : 1;
} else {
  console.error('usage: disk-log-roundtrip-tool.js write-clean IMG | check IMG REGIONS [DIRTY...]');
  process.exitCode = 2;
}

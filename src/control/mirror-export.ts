/**
 * mirrorExport: presents a mapped device as an NBD export, with the mirror's own metadata context
 * `umirror:sync` whose extents carry flag 1 over regions that are out of sync (so
 * `nbdinfo --map=umirror:sync` shows resync progress). Segments that are not mirrors are in sync.
 */
import { assert } from '../assert.js';
import { syncExtentsMax } from '../limits.js';
import { MirrorSet } from '../mirror/mirror-set.js';
import type { ExtentQuery, NbdExport, NbdExtent } from '../nbd/nbd-export.js';
import type { MappedDevice } from '../target/mapped-device.js';

export const syncContextName = 'umirror:sync';
/** Flag of an out-of-sync extent in the umirror:sync context. */
export const outOfSyncFlag = 1;

export function syncExtents(device: MappedDevice, query: ExtentQuery): NbdExtent[] {
  const extents: NbdExtent[] = [];
  const push = (lengthBytes: number, flags: number): void => {
    const last = extents[extents.length - 1];
    if (last !== undefined && last.flags === flags) extents[extents.length - 1] = { lengthBytes: last.lengthBytes + lengthBytes, flags };
    else extents.push({ lengthBytes, flags });
  };
  const end = query.offsetBytes + query.lengthBytes;
  let at = query.offsetBytes;
  for (const segment of device.segments()) {
    const segmentStart = segment.startBytes;
    const segmentEnd = segment.endBytes;
    if (segmentEnd <= at || segmentStart >= end) continue;
    const target = segment.target;
    while (at < Math.min(end, segmentEnd) && extents.length < syncExtentsMax) {
      if (!(target instanceof MirrorSet)) {
        const stop = Math.min(end, segmentEnd);
        push(stop - at, 0);
        at = stop;
        continue;
      }
      const relative = at - segmentStart;
      const regionIndex = Math.floor(relative / target.regionBytes);
      const regionEnd = Math.min(segmentStart + (regionIndex + 1) * target.regionBytes, segmentEnd, end);
      push(regionEnd - at, target.regionInSync(regionIndex) ? 0 : outOfSyncFlag);
      at = regionEnd;
    }
    if (query.reqOne && extents.length > 0) break;
  }
  if (extents.length === 0) extents.push({ lengthBytes: Math.max(1, Math.min(query.lengthBytes, device.sizeBytes - query.offsetBytes)), flags: 0 });
  assert(extents.every((extent) => extent.lengthBytes > 0), 'extents are non-empty');
  return extents;
}

export function mirrorExport(options: { name: string; device: MappedDevice; description?: string }): NbdExport {
  return {
    name: options.name,
    device: options.device,
    description: options.description ?? `umirror device ${options.name}`,
    metaContexts: [{ name: syncContextName, extents: (query) => Promise.resolve(syncExtents(options.device, query)) }],
  };
}

/**
 * The public API of umirror (the only barrel). Everything a program needs to build, run and serve a
 * mirror set: block devices, dirty logs, the mirror set and its table syntax, dm core's mapped device,
 * and the NBD server.
 */
export type { BlockDevice, BlockCapabilities, ReadOptions, WriteOptions, ZeroOptions } from './block/block-device.js';
export { BlockDeviceBase } from './block/block-device-base.js';
export { MemoryBlockDevice } from './block/memory-block-device.js';
export { FileBlockDevice } from './block/file-block-device.js';
export { FaultyBlockDevice } from './block/faulty-block-device.js';
export type { FaultConfig } from './block/faulty-block-device.js';
export { NbdBlockDevice } from './block/nbd-block-device.js';
export type { NbdBlockDeviceOptions } from './block/nbd-block-device.js';
export { ReconnectingNbdBlockDevice } from './block/reconnecting-block-device.js';
export type {
  NbdConnectionEvent,
  NbdConnectionState,
  ReconnectingNbdBlockDeviceOptions,
  ScheduleTimer,
} from './block/reconnecting-block-device.js';

export type { DirtyLog, DirtyLogContext, DirtyLogStats, LogHealth, LogSpec, LogSyncMode } from './dirty-log/dirty-log.js';
export { CoreDirtyLog } from './dirty-log/core-dirty-log.js';
export { DiskDirtyLog } from './dirty-log/disk-dirty-log.js';
export { createDirtyLog, parseLogSpec } from './dirty-log/create-dirty-log.js';

export { RegionHash } from './region/region-hash.js';
export type { RegionState } from './region/region-hash.js';
export { Copier } from './copy/copier.js';
export type { CopyJob, CopyResult } from './copy/copier.js';

export { MirrorSet } from './mirror/mirror-set.js';
export type { MirrorEvent, MirrorSetOptions, MirrorStats, ReadPolicy } from './mirror/mirror-set.js';
export { createMirrorSet } from './mirror/create-mirror-set.js';
export type { CreateMirrorSetOptions } from './mirror/create-mirror-set.js';
export { Leg } from './mirror/leg.js';
export type { LegErrorKind, LegHealth } from './mirror/leg.js';
export { parseMirrorArgs, formatMirrorTable, formatMirrorStatus } from './mirror/table.js';
export type { MirrorTableArgs, MirrorFeatures, MirrorLegSpec } from './mirror/table.js';

export { MappedDevice } from './target/mapped-device.js';
export { parseTableText, formatTableLine } from './target/table-lines.js';
export type { TableLine } from './target/table-lines.js';
export type { Target, SuspendOptions } from './target/target.js';
export { RequeueRequest } from './target/target.js';
export { targetBuilder } from './control/build-target.js';
export type { DeviceResolver } from './control/build-target.js';
export { deviceResolver, fileResolver, findRemoteOpenError, RemoteOpenError } from './control/device-resolver.js';
export { mirrorExport } from './control/mirror-export.js';

export { NbdServer } from './nbd/server.js';
export type { NbdListener, ListenAddress, NbdServerOptions } from './nbd/server.js';
export { loadNbdServerTls } from './nbd/server-tls.js';
export type { NbdServerTls, NbdServerTlsOptions, NbdTlsMode } from './nbd/server-tls.js';
export type { NbdExport, ExportResolver, NbdMetaContext, NbdExtent } from './nbd/nbd-export.js';

export { BlockError, TableError, ControlError, ListenError, TlsKeyError, ERRNOS, TABLE_ERRNOS, CONTROL_ERRNOS, LISTEN_ERRNOS, TLS_KEY_ERRNOS } from './errors.js';
export type { Errno, TableErrno, ControlErrno, TlsKeyErrno } from './errors.js';

/**
 * Parses a kernel-syntax table and returns its lines; mirror lines are validated with the kernel's
 * messages (TableError). Devices are not opened.
 */
export { parseTable } from './control/parse-table.js';

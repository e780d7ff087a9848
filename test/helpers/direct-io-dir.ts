/**
 * A temp dir on a file system that does O_DIRECT for real (ext4/xfs): under the repository's tmp/
 * (ignored by git), since os.tmpdir() may be a tmpfs. Tests of `direct: true` / `--direct-io` on image
 * files make their images here; the tmpfs case is tested on purpose with /dev/shm.
 */
import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** build/test/helpers/ -> the repository root -> tmp/. */
const projectTmp = fileURLToPath(new URL('../../../tmp/', import.meta.url));

export async function makeDirectIoDir(prefix: string): Promise<string> {
  await mkdir(projectTmp, { recursive: true });
  return mkdtemp(join(projectTmp, prefix));
}

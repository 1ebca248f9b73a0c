/**
 * Data directories on file systems of their own, for disk faults (root only): a read-only disk
 * is ext4 on a loop device mounted `errors=remount-ro` and turned read-only by an ext4 error
 * (`/sys/fs/ext4/<dev>/trigger_fs_error`), as a failing disk does; a plain
 * `mount -o remount,ro` cannot do it, the kernel refuses (EBUSY) while RocksDB holds files open
 * for writing. A full disk is filled by a filler file until ENOSPC. `release()` unmounts and
 * detaches everything made here.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { waitFor } from '../wait.ts';

const run = promisify(execFile);

/** Whether this process may mount file systems (root with CAP_SYS_ADMIN on Linux). */
export function canMount(): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(path.join(tmpdir(), 'ensemble-disk-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    execFileSync('which', ['mkfs.ext4', 'e2fsck', 'losetup'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

/** Every mount point and loop device made here, released at the end even if a test failed. */
const mounted = new Set<string>();
const attached = new Set<string>();

export async function release(): Promise<void> {
  for (const dir of mounted) await unmount(dir, true).catch(() => {});
  for (const device of attached) await detach(device);
}

/** The same at exit, synchronously (a run interrupted with Ctrl-C leaves no mounts behind). */
function releaseNow(): void {
  for (const dir of mounted) {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  for (const device of attached) {
    try {
      execFileSync('losetup', ['-d', device], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  mounted.clear();
  attached.clear();
}
process.on('exit', releaseNow);

async function mount(args: readonly string[], dir: string): Promise<void> {
  await run('mount', [...args, dir]);
  mounted.add(dir);
}

async function unmount(dir: string, lazy = false): Promise<void> {
  await run('umount', lazy ? ['-l', dir] : [dir]);
  mounted.delete(dir);
}

/** A node's data directory on a file system of its own, with a fault to inject and mend. */
export interface Disk {
  readonly dir: string;
  /** Makes writes to `dir` fail (resolves once they do). */
  break(): Promise<void>;
  /** Makes `dir` writable again (the node that used it has exited); says what it did. */
  mend(): Promise<string>;
}

/** Attaches `image` to a free loop device (detached at the end); returns the device. */
async function attach(image: string): Promise<string> {
  const device = (await run('losetup', ['--find', '--show', image])).stdout.trim();
  attached.add(device);
  return device;
}

async function detach(device: string): Promise<void> {
  // A device still in use (a mount lazily unmounted) is detached once it is released.
  await run('losetup', ['-d', device]).catch(() => {});
  attached.delete(device);
}

/**
 * ext4 on a loop device (a sparse image), turned read-only by an ext4 error. Mending attaches
 * the image to a new loop device: another process's mount namespace (`ip netns exec`,
 * `unshare -m`) may hold a copy of the broken mount, and so its read-only superblock, after our
 * unmount; mounting the same device again would get that superblock back, still read-only.
 */
export async function readOnlyDisk(
  dir: string,
  imageDir: string,
  sizeMiB = 256,
): Promise<Disk & { fill(): Promise<void> }> {
  const filler = path.join(dir, 'chaos-filler');
  const image = path.join(imageDir, 'disk.img');
  await run('truncate', ['-s', `${sizeMiB}M`, image]);
  await run('mkfs.ext4', ['-q', '-F', image]);
  let device = await attach(image);
  await mount(['-o', 'errors=remount-ro', device], dir);
  const readOnly = async () =>
    /(^|,)(ro|emergency_ro)(,|$)/.test((await run('findmnt', ['-n', '-o', 'OPTIONS', dir])).stdout.trim());
  return {
    dir,
    async break() {
      await writeFile(`/sys/fs/ext4/${path.basename(device)}/trigger_fs_error`, 'ensemble disk chaos test');
      await waitFor(readOnly, { what: `${dir} read-only` });
    },
    /** Fills it up instead (mended by deleting the filler). */
    async fill() {
      await fillUp(filler);
    },
    async mend() {
      if (!(await readOnly())) {
        await rm(filler, { force: true });
        return 'deleted the filler';
      }
      await unmount(dir);
      await detach(device);
      // 0: clean, 1: errors corrected; anything else is a real problem.
      const fsck = await run('e2fsck', ['-f', '-y', image]).then(
        () => 0,
        (err: { code?: number }) => err.code ?? -1,
      );
      if (fsck !== 0 && fsck !== 1) throw new Error(`e2fsck ${image} exited ${fsck}`);
      device = await attach(image);
      await mount(['-o', 'errors=remount-ro', device], dir);
      if (await readOnly()) throw new Error(`${dir} is still read-only after mending`);
      return `unmounted, e2fsck exited ${fsck}, mounted again`;
    },
  };
}

/** Writes `file` until the file system has no room left (ENOSPC). */
async function fillUp(file: string): Promise<void> {
  const fh = await open(file, 'w');
  try {
    for (const size of [1 << 20, 4096, 1]) {
      const chunk = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          await fh.write(chunk);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    await fh.close();
  }
}

/** A small tmpfs, filled up by a filler file. */
export async function fullDisk(dir: string, sizeMiB = 64): Promise<Disk> {
  await mount(['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs'], dir);
  const filler = path.join(dir, 'filler');
  return {
    dir,
    async break() {
      await fillUp(filler);
    },
    async mend() {
      const { size } = await stat(filler);
      await rm(filler);
      return `deleted the filler (${(size / 2 ** 20).toFixed(1)} MiB)`;
    },
  };
}

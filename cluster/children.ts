/**
 * Child processes that must not outlive this process (NATS servers, node processes of `ensemble
 * up` and of the tests). Once `adopt`ed, a child gets SIGKILL, by its own pid, when this process
 * exits, and when it is about to die of SIGTERM, SIGINT or SIGHUP that nobody else handles (a
 * test runner stopping a worker, a shell's kill). A process that installs its own handler for
 * those signals keeps them: it is then expected to stop its children itself, and the `exit` hook
 * still reaps what is left.
 *
 * Not covered: SIGKILL of this process (nothing runs then).
 */
import type { ChildProcess } from 'node:child_process';

const adopted = new Set<ChildProcess>();
const SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
let installed = false;

function reapAll(): void {
  for (const child of adopted) {
    try {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid, 'SIGKILL');
      }
    } catch {
      // already gone
    }
  }
  adopted.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  // Someone else handles it: the process is not about to die, or will stop its children itself.
  if (process.listenerCount(signal) > 1) return;
  reapAll();
  process.off(signal, onSignal);
  // Die of the signal, as the default action would have.
  process.kill(process.pid, signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', reapAll);
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

/** Kills `child` (SIGKILL) if this process exits or is killed by a signal before it. */
export function adopt(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  install();
  adopted.add(child);
  child.once('exit', () => adopted.delete(child));
}

/** Number of adopted children still running (for tests and diagnostics). */
export const adoptedCount = (): number => adopted.size;

/** Stops `children` with SIGTERM, then SIGKILL after `graceMs`; resolves once all exited. */
export function stopChildren(children: readonly ChildProcess[], graceMs = 5000): Promise<void> {
  return Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const timer = setTimeout(() => c.kill('SIGKILL'), graceMs);
          c.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  ).then(() => undefined);
}

/**
 * Whether a process with this id runs on this host: signal 0 checks without sending anything. EPERM means it
 * exists but belongs to another user. For leases and staging folders named after the process that made them.
 */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

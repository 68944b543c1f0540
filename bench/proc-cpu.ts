// CPU time of a process tree from /proc (utime + stime), for CPU-per-request figures that the machine's other
// work moves far less than throughput: nginx's master + worker, Pillion with its workers.
import { readFileSync } from 'node:fs';
import { childPids } from '../src/cli/children.js';

/** Linux's USER_HZ: /proc/PID/stat counts CPU time in these ticks. */
const TICK_MS = 10;

/** User + system CPU of one process so far, ms; undefined once it is gone. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return undefined;
  }
}

/** The same over a process and all its descendants; undefined when the root is gone. */
export function treeCpuMs(pid: number): number | undefined {
  const own = processCpuMs(pid);
  if (own === undefined) return undefined;
  let total = own;
  for (const child of childPids(pid)) total += treeCpuMs(child) ?? 0;
  return total;
}

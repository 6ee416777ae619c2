/** CPU-seconds of this process (all threads) and wall seconds spent in `work`: what every bench divides by. */
export async function timed(work: () => Promise<void>): Promise<{ cpu: number; wall: number }> {
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const u = process.cpuUsage(cpu);
  return { cpu: (u.user + u.system) / 1e6, wall: (performance.now() - t0) / 1000 };
}

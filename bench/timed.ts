export interface Elapsed {
  /** CPU-seconds of this process, all threads. */
  cpu: number;
  wall: number;
}

/** Starts a clock; calling the result gives the CPU and wall seconds since. */
export function clock(): () => Elapsed {
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const u = process.cpuUsage(cpu);
    return { cpu: (u.user + u.system) / 1e6, wall: (performance.now() - t0) / 1000 };
  };
}

/** CPU-seconds of this process (all threads) and wall seconds spent in `work`: what every bench divides by. */
export async function timed(work: () => Promise<void>): Promise<Elapsed> {
  const elapsed = clock();
  await work();
  return elapsed();
}

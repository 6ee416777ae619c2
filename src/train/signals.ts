/**
 * SIGINT/SIGTERM/SIGHUP for a long-running command. The first signal aborts `signal`: the command finishes
 * its step, saves its state and returns, then exits 128 + the signal's number. A second signal exits at once,
 * and so does the process when saving has not ended within STOP_DEADLINE_MS (a stalled store would otherwise
 * hold it for the retry policy's minutes, past an orchestrator's grace period). Either way the stores hold
 * whole objects only: every put is atomic, so the last checkpoint is intact. Once the command has returned,
 * nothing may keep the process alive: a read abandoned on a stalled connection still holds its socket, so
 * `finish` makes sure the process ends shortly after.
 */
import { constants } from 'node:os';

/** Grace for the process to end by itself after a stopped command returned, in ms. */
const EXIT_GRACE_MS = 1000;
/** Longest time from the first signal to exit: under Kubernetes' default 30 s termination grace. */
export const STOP_DEADLINE_MS = 20_000;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export class StopSignals {
  private readonly controller = new AbortController();
  private received: NodeJS.Signals | null = null;
  private readonly handler = (signal: NodeJS.Signals) => this.onSignal(signal);

  /** `onFirst` says what the command does about the first signal (printed to stderr). */
  constructor(
    private readonly command: string,
    private readonly onFirst: (signal: NodeJS.Signals) => void,
  ) {
    for (const s of SIGNALS) process.on(s, this.handler);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The signal that stopped the command, if any. */
  get stoppedBy(): NodeJS.Signals | null {
    return this.received;
  }

  /** The exit code for a stop: 128 + the signal's number, as shells report it. */
  get exitCode(): number {
    return 128 + (constants.signals[this.received ?? 'SIGTERM'] ?? 15);
  }

  /** Removes the handlers; after a stop, ends the process if something still holds it open. */
  finish(): void {
    for (const s of SIGNALS) process.off(s, this.handler);
    if (this.received) setTimeout(() => process.exit(this.exitCode), EXIT_GRACE_MS).unref();
  }

  private onSignal(signal: NodeJS.Signals): void {
    if (this.received) {
      process.stderr.write(
        `wildstream ${this.command}: second ${signal}: exiting now; what was already saved is kept\n`,
      );
      process.exit(this.exitCode);
    }
    this.received = signal;
    this.onFirst(signal);
    this.controller.abort();
    setTimeout(() => {
      process.stderr.write(
        `wildstream ${this.command}: not stopped within ${STOP_DEADLINE_MS / 1000} s of ${signal} (a stalled store, or the WebGPU engine still compiling its kernels, which a driver may do at their first dispatch): exiting now; the last checkpoint written is intact\n`,
      );
      process.exit(this.exitCode);
    }, STOP_DEADLINE_MS).unref();
  }
}

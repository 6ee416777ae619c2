// StopSignals: the first signal asks the command to save and stop; a second one, or saving past the deadline,
// exits at once with 128 + the signal's number.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { STOP_DEADLINE_MS, StopSignals } from '../../src/train/signals.js';

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

function capture() {
  const exit = vi.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
  const lines: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation(((text: string) => lines.push(text)) as never);
  return { exit, lines };
}

describe('StopSignals', () => {
  it('aborts on the first signal, then exits at the deadline when saving has not ended (a stalled store)', () => {
    vi.useFakeTimers();
    const { exit, lines } = capture();
    const first: string[] = [];
    const stop = new StopSignals('train', (s) => first.push(s));
    process.emit('SIGTERM', 'SIGTERM');
    expect(stop.signal.aborted).toBe(true);
    expect(first).toEqual(['SIGTERM']);
    vi.advanceTimersByTime(STOP_DEADLINE_MS - 1);
    expect(exit).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(exit).toHaveBeenCalledWith(143);
    expect(lines.join('')).toMatch(/not stopped within 20 s of SIGTERM .*the last checkpoint written is intact/);
    stop.finish();
  });

  it('exits at once on a second signal, and takes SIGHUP as a stop (exit 129)', () => {
    const { exit, lines } = capture();
    const stop = new StopSignals('train', () => {});
    process.emit('SIGHUP', 'SIGHUP');
    expect(stop.stoppedBy).toBe('SIGHUP');
    expect(stop.exitCode).toBe(129);
    process.emit('SIGINT', 'SIGINT');
    expect(exit).toHaveBeenCalledWith(129);
    expect(lines.join('')).toMatch(/second SIGINT: exiting now/);
    stop.finish();
  });
});

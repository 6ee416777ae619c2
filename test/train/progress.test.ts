import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatLine, type MetricLine } from '../../src/train/metrics.js';
import { trainProgress } from '../../src/train/progress.js';

/**
 * A terminal screen, enough of one to replay what the progress writes: line feeds, carriage returns,
 * cursor to column (CSI n G), erase line (CSI 0/2 K), cursor save/restore (ESC 7 / ESC 8).
 */
class Screen {
  lines: string[] = [''];
  private row = 0;
  private col = 0;
  private saved = { row: 0, col: 0 };

  stream(): Writable & { isTTY: boolean; columns: number } {
    const s = new Writable({ write: (chunk, _enc, done) => (this.feed(String(chunk)), done()) });
    return Object.assign(s, { isTTY: true, columns: 120 });
  }

  private feed(text: string): void {
    const tokens = text.match(/\x1b\[\??[\d;]*[A-Za-z]|\x1b[78]|[\s\S]/g) ?? [];
    for (const t of tokens) {
      if (t === '\n') [this.row, this.col] = [this.row + 1, 0];
      else if (t === '\r') this.col = 0;
      else if (t === '\x1b7') this.saved = { row: this.row, col: this.col };
      else if (t === '\x1b8') ({ row: this.row, col: this.col } = this.saved);
      else if (/^\x1b\[\d+G$/.test(t)) this.col = Number(t.slice(2, -1)) - 1;
      else if (/^\x1b\[[02]?K$/.test(t))
        this.lines[this.row] = t === '\x1b[2K' ? '' : (this.lines[this.row] ?? '').slice(0, this.col);
      else if (t.startsWith('\x1b'))
        continue; // cursor visibility and the like
      else this.put(t);
    }
  }

  private put(ch: string): void {
    while (this.lines.length <= this.row) this.lines.push('');
    const line = this.lines[this.row]!.padEnd(this.col);
    this.lines[this.row] = line.slice(0, this.col) + ch + line.slice(this.col + 1);
    this.col++;
  }
}

describe('training progress on a terminal', () => {
  it('prints a stop message and warnings on lines of their own, never onto the bar', async () => {
    const screen = new Screen();
    const tty = screen.stream();
    const p = trainProgress({ out: tty, err: tty });
    p.log('wildstream train: backend wasm, starting at step 0');
    p.step(1, 10, 4.5, 0.1);
    p.log('step 1/10  epoch 0  loss 4.5000  lr 0.100'); // the bar shows these
    p.step(2, 10, 4.2, 0.1);
    p.note('wildstream train: SIGINT: finishing the step and writing a checkpoint');
    p.step(3, 10, 4.1, 0.1);
    p.log('checkpoint checkpoints/step-000000003.ckpt');
    p.stop();
    tty.write('wildstream: stopped by SIGINT at step 3\n'); // what the CLI prints next goes below the bar
    await new Promise((r) => setImmediate(r));
    const lines = screen.lines.map((l) => l.trimEnd()).filter(Boolean);
    expect(lines[0]).toBe('wildstream train: backend wasm, starting at step 0');
    expect(lines).toContain('wildstream train: SIGINT: finishing the step and writing a checkpoint');
    expect(lines).toContain('checkpoint checkpoints/step-000000003.ckpt');
    expect(lines.filter((l) => l.startsWith('train ['))).toHaveLength(1);
    expect(lines.at(-2)).toMatch(/^train \[.*\] 3\/10 steps \| loss 4\.1000/);
    expect(lines.at(-1)).toBe('wildstream: stopped by SIGINT at step 3');
    expect(lines.join('\n')).not.toMatch(/step 1\/10 +epoch/);
  });

  it('without a terminal: every line, and notes on stderr', () => {
    const out: string[] = [],
      err: string[] = [];
    const sink = (to: string[]) => new Writable({ write: (c, _e, done) => (to.push(String(c)), done()) });
    const p = trainProgress({ out: sink(out), err: sink(err) });
    p.step(1, 2, 1, 0.1);
    p.log('step 1/2  epoch 0');
    p.note('stop');
    p.stop();
    expect(out).toEqual(['step 1/2  epoch 0\n']);
    expect(err).toEqual(['stop\n']);
  });
});

describe('the interval line', () => {
  const line: MetricLine = {
    step: 20,
    epoch: 1,
    loss: 4.25,
    lr: 0.3,
    imagesPerSec: 123.45,
    dataWaitPct: 12.4,
    backend: 'wasm',
    time: '2026-01-01T00:00:00.000Z',
  };

  it('shows the data wait, and on a GPU run the GPU wait beside it', () => {
    expect(formatLine(line, 100)).toBe('step 20/100  epoch 1  loss 4.2500  lr 0.300  123.5 img/s  data-wait 12%  wasm');
    expect(formatLine({ ...line, backend: 'webgpu', gpuWaitPct: 80.6 }, 100)).toBe(
      'step 20/100  epoch 1  loss 4.2500  lr 0.300  123.5 img/s  data-wait 12%  gpu-wait 81%  webgpu',
    );
  });
});

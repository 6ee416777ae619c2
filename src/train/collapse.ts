/**
 * SwAV's collapse, seen in the loss: when every prediction is uniform over the K prototypes the loss is
 * exactly ln K whatever the codes (facebookresearch/swav issues 62 and 69: "stuck at 8.0" for K = 3000).
 * With frozen prototypes and many more prototypes than embedding dimensions, uniform predictions are out of
 * reach and a collapsed run sits just above ln K instead (8.09 vs ln 3000 = 8.01 on a few thousand images).
 * So the watch looks for a loss within 2 % of ln K that has stopped falling, frozen prototypes or not. A run
 * that learns passes through that band on its way down (the demo: 3.45, 3.40 at steps 75 and 100, ln 32 =
 * 3.47), which is why a window still falling by more than 0.5 % of ln K is not a plateau.
 */
import { defined } from '../defaults.js';

export interface CollapseOptions {
  prototypes: number;
  /** Largest |loss / ln K - 1| that counts as at ln K. @default 0.02 */
  tolerance?: number;
  /** Consecutive log intervals at ln K before the warning. @default 3 */
  intervals?: number;
  /** A window whose loss fell by more than this share of ln K is still leaving the plateau. @default 0.005 */
  minFall?: number;
  /** Where a resumed run's watch stood at its checkpoint (`state()`). @default a fresh watch */
  state?: CollapseState;
}

/**
 * What a checkpoint keeps of the watch (its header's `collapse`), so that a run interrupted and resumed, however
 * often, counts its intervals at ln K as one unbroken run would: a fresh count at every resume would never reach
 * `intervals` in a run stopped more often than that.
 */
export interface CollapseState {
  /** The latest consecutive log intervals at ln K (at most `intervals` of them), oldest first. */
  window: Array<{ step: number; loss: number }>;
  /** This stay at ln K was warned about already. */
  warned: boolean;
  /** Warnings given so far in the run. */
  warnings: number;
}

/** Whether `loss` lies within `tolerance` (relative) of ln K. */
export function atLnK(loss: number, prototypes: number, tolerance = 0.02): boolean {
  return Math.abs(loss / Math.log(prototypes) - 1) <= tolerance;
}

/** Interval by interval: a warning line when the loss has sat at ln K for `intervals` log intervals. */
export class CollapseWatch {
  /** Warnings given so far in the run, a resumed run's from its checkpoint on (one per stay on the plateau). */
  warnings: number;
  private readonly o: Required<Omit<CollapseOptions, 'state'>>;
  private window: Array<{ step: number; loss: number }>;
  private warned: boolean;

  constructor(options: CollapseOptions) {
    const { state, ...rest } = options;
    this.o = { tolerance: 0.02, intervals: 3, minFall: 0.005, ...defined(rest) };
    this.window = (state?.window ?? []).slice(-this.o.intervals).map((w) => ({ ...w }));
    this.warned = state?.warned ?? false;
    this.warnings = state?.warnings ?? 0;
  }

  /** The watch as a checkpoint keeps it: a watch built from it observes on as this one would. */
  state(): CollapseState {
    return { window: this.window.map((w) => ({ ...w })), warned: this.warned, warnings: this.warnings };
  }

  /** The interval ending at `step` had mean loss `loss`; `frozen` when the prototypes were frozen. */
  observe(step: number, loss: number, frozen = false): string | null {
    const { prototypes, tolerance, intervals, minFall } = this.o;
    const lnK = Math.log(prototypes);
    if (!atLnK(loss, prototypes, tolerance)) {
      this.window = [];
      this.warned = false; // a later return to the plateau warns again
      return null;
    }
    this.window = [...this.window, { step, loss }].slice(-intervals);
    if (this.warned || this.window.length < intervals) return null;
    if (this.window[0]!.loss - loss > minFall * lnK) return null;
    this.warned = true;
    this.warnings++;
    const losses = this.window.map((w) => w.loss.toFixed(4)).join(', ');
    return (
      `warning: collapse? the loss has stayed within ${Math.round(tolerance * 100)} % of ln ${prototypes} = ${lnK.toFixed(4)} ` +
      `for ${intervals} log intervals (${losses} up to step ${step}${frozen ? ', prototypes still frozen' : ''}): ` +
      'the predictions are (nearly) uniform over the prototypes; see README "When the loss sits at ln K"'
    );
  }
}

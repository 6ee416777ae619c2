/**
 * The types every generated kernel shares: the storage dtypes and a kernel specialised to one shape. A leaf
 * module, so that kernel generators and the runner can both name them without importing each other.
 */
export type Dtype = 'f32' | 'f16';
export const DTYPE_BYTES: Record<Dtype, number> = { f32: 4, f16: 2 };

/** A WGSL compute shader specialised to one shape; `key` names it uniquely (the pipeline cache key). */
export interface Kernel {
  key: string;
  code: string;
  /** Workgroups to dispatch, x / y / z (each at most 65535). */
  workgroups: readonly [number, number, number];
}

/**
 * What an opened WebGPU device offers and how the engine holds it: plain data and types, apart from device.ts
 * (which opens it) so that the runner and the GEMM choice can name them without importing the code that opens
 * a device.
 */
/// <reference types="@webgpu/types" />
import type { MatrixGemmChoice, MatrixGemmConfig } from './kernels/gemm-spec.js';

/** Features the engine uses when the adapter offers them. */
export const ENGINE_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as const;
export type EngineFeature = (typeof ENGINE_FEATURES)[number];

/** Limits raised to the adapter's maximum: large activations and 128-wide tiles need more than the defaults. */
export const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxStorageBuffersPerShaderStage',
] as const;
export type RaisedLimit = (typeof RAISED_LIMITS)[number];

/** What the device offers, in a form `train` can print and kernels can choose by. */
export interface GpuDeviceInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software adapter (Mesa lavapipe, SwiftShader): correct but slow. */
  isFallback: boolean;
  /** Whether each engine feature was granted on the device (not merely offered). */
  features: Record<EngineFeature, boolean>;
  /** Subgroup sizes the adapter reports (0 when unknown). */
  subgroupSizes: { min: number; max: number };
  /** Cooperative-matrix shapes, as Dawn reports them in `adapter.info.subgroupMatrixConfigs`. */
  subgroupMatrixConfigs: readonly SubgroupMatrixConfig[];
  limits: Record<RaisedLimit, number>;
  /** Which GEMM tiles the engine runs and why (set by openDevice; absent on an info built elsewhere). */
  gemm?: GemmTilesChoice;
}

export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface GpuContext {
  /**
   * Dawn's instance, shared by every device the process opens with the same toggles and never dropped (see
   * `openDevice`): Dawn polls its work (mapAsync, pipeline compiles) only while the instance lives.
   */
  readonly gpu: GPU;
  device: GPUDevice;
  info: GpuDeviceInfo;
  /** Releases the device; buffers and pipelines made on it become unusable. */
  destroy(): void;
}

/** The outcome for one operand type. */
export type GemmTilesPick =
  | { kind: 'matrix'; config: MatrixGemmConfig; /** The self-check's scaled error. */ error: number }
  | { kind: 'tiled'; reason: string };

export interface GemmTilesChoice {
  f16: GemmTilesPick;
  f32: GemmTilesPick;
  /** What gemmKernel routes to (`useMatrixGemm`). */
  matrix: MatrixGemmChoice;
  /** For the device line: `gemm tiles: subgroup-matrix f16 16x16x16 (f32: tiled: no f32 x f32 -> f32 config)`. */
  summary: string;
}

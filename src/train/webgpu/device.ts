/**
 * Opens a WebGPU device through Dawn for Node (the optional `webgpu` package) with the features the training
 * engine can use, and describes what it got.
 *
 * Dawn keeps `shader-f16` off on NVIDIA's Vulkan drivers older than 615.71 unless `vulkan_enable_f16_on_nvidia`
 * is set, and exposes `chromium-experimental-subgroup-matrix` (cooperative matrices: tensor cores) only with
 * `allow_unsafe_apis`; both toggles are asked for by default. Features the adapter lacks are left out, never
 * an error: the engine picks its kernels from `GpuDeviceInfo.features`.
 */
/// <reference types="@webgpu/types" />
import { WebGpuUnavailableError } from './errors.js';
import {
  ENGINE_FEATURES,
  RAISED_LIMITS,
  type EngineFeature,
  type GpuContext,
  type GpuDeviceInfo,
  type RaisedLimit,
  type SubgroupMatrixConfig,
} from './device-info.js';
import { gpuSelfCheck, selectGemmTiles, tiledChoice } from './gemm-select.js';
import { useMatrixGemm } from './kernels/gemm.js';
import { GpuRunner } from './runner.js';

export {
  ENGINE_FEATURES,
  type EngineFeature,
  type GemmTilesChoice,
  type GemmTilesPick,
  type GpuContext,
  type GpuDeviceInfo,
  type RaisedLimit,
  type SubgroupMatrixConfig,
} from './device-info.js';

/** Dawn instance toggles: f16 on older NVIDIA Vulkan drivers, and the experimental (unsafe) subgroup matrices. */
export const DAWN_TOGGLES = ['enable-dawn-features=vulkan_enable_f16_on_nvidia,allow_unsafe_apis'] as const;

export interface OpenDeviceOptions {
  /** Features to ask for; each is requested only where the adapter offers it. @default ENGINE_FEATURES */
  features?: readonly EngineFeature[];
  /** Dawn instance toggles passed to `create()`. @default DAWN_TOGGLES */
  toggles?: readonly string[];
  /** Adapter preference (a machine with an integrated and a discrete GPU). @default 'high-performance' */
  powerPreference?: GPUPowerPreference;
  /**
   * Chooses the GEMM tiles (gemm-select.ts): where subgroup matrices are granted, compiles and self-checks the
   * subgroup-matrix GEMM, and makes it the process's default for the GEMMs it fits (`useMatrixGemm`). false
   * leaves every GEMM tiled. @default true
   */
  gemmSelfCheck?: boolean;
}

interface DawnModule {
  create(options: string[]): GPU;
}

/** Loads Dawn; a missing optional package is a typed error that says how to install it. */
export async function loadDawn(): Promise<DawnModule> {
  let mod: Partial<DawnModule> | null;
  try {
    mod = (await import('webgpu' as string)) as Partial<DawnModule>;
  } catch (err) {
    throw new WebGpuUnavailableError(
      'not-installed',
      `the optional \`webgpu\` package (Dawn for Node) could not be loaded: ${firstLine(err)}; install it with npm i -E webgpu@0.6.2`,
      { cause: err },
    );
  }
  if (typeof mod?.create !== 'function')
    throw new WebGpuUnavailableError(
      'not-installed',
      'the `webgpu` package loaded but has no create(): expected webgpu@0.6.2',
    );
  return mod as DawnModule;
}

/**
 * Dawn instances by their toggles, one each per process and never dropped: a dropped instance is destroyed by
 * the garbage collector while Dawn's and the driver's threads still wait on its locks, which aborts the
 * process a collection or two later ("The futex facility returned an unexpected error code", webgpu 0.6.2 on
 * lavapipe, after a few devices opened and destroyed in one process). A held instance does not keep the
 * process alive once its devices are idle.
 */
const instances = new Map<string, GPU>();

function instance(dawn: DawnModule, toggles: readonly string[]): GPU {
  const key = toggles.join('\n');
  let gpu = instances.get(key);
  if (!gpu) instances.set(key, (gpu = dawn.create([...toggles])));
  return gpu;
}

/** Opens the adapter and a device with every engine feature the adapter offers. */
export async function openDevice(options: OpenDeviceOptions = {}): Promise<GpuContext> {
  const gpu = instance(await loadDawn(), options.toggles ?? DAWN_TOGGLES);
  // Dawn answers null, or throws "no suitable backends found", when no driver offers an adapter.
  const adapter = await gpu
    .requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' })
    .catch((err: unknown) => {
      throw noAdapter(firstLine(err), err);
    });
  if (!adapter) throw noAdapter('no Vulkan driver answered');
  const wanted = (options.features ?? ENGINE_FEATURES).filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures: wanted as GPUFeatureName[], requiredLimits });
  } catch (err) {
    throw new WebGpuUnavailableError(
      'no-device',
      `WebGPU adapter ${adapter.info.description || adapter.info.device} refused a device with ${wanted.join(', ') || 'no extra features'}: ${firstLine(err)}`,
      { cause: err },
    );
  }
  let chosen = false;
  const ctx: GpuContext = {
    gpu,
    device,
    info: describeAdapter(adapter, device),
    destroy: () => {
      if (chosen) useMatrixGemm({}); // this device's choice would not hold on another
      device.destroy();
    },
  };
  if (options.gemmSelfCheck ?? true) {
    ctx.info.gemm = await selectGemmTiles(ctx.info, gpuSelfCheck(new GpuRunner(ctx)));
    useMatrixGemm(ctx.info.gemm.matrix);
    chosen = true;
  } else ctx.info.gemm = tiledChoice('self-check not run');
  return ctx;
}

/** What the adapter and the device opened on it offer, as plain data (Dawn's objects keep fields as getters). */
export function describeAdapter(adapter: GPUAdapter, device: GPUDevice): GpuDeviceInfo {
  const info = adapter.info as GPUAdapterInfo & {
    subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[];
    isFallbackAdapter?: boolean;
  };
  const features = Object.fromEntries(ENGINE_FEATURES.map((f) => [f, device.features.has(f)])) as Record<
    EngineFeature,
    boolean
  >;
  const limits = Object.fromEntries(RAISED_LIMITS.map((l) => [l, device.limits[l]])) as Record<RaisedLimit, number>;
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isFallback: info.isFallbackAdapter ?? false,
    features,
    subgroupSizes: { min: info.subgroupMinSize ?? 0, max: info.subgroupMaxSize ?? 0 },
    // Field by field: Dawn's config objects keep their fields as prototype getters, which a spread would drop.
    subgroupMatrixConfigs: [...(info.subgroupMatrixConfigs ?? [])].map((c) => ({
      componentType: c.componentType,
      resultComponentType: c.resultComponentType,
      M: c.M,
      N: c.N,
      K: c.K,
    })),
    limits,
  };
}

/** One line for the training log: adapter, granted features, subgroup sizes, largest binding, GEMM tiles and why. */
export function describeDevice(info: GpuDeviceInfo): string {
  const name = [info.vendor, info.device || info.description].filter(Boolean).join(' ') || 'unknown adapter';
  const granted = ENGINE_FEATURES.filter((f) => info.features[f]);
  const missing = ENGINE_FEATURES.filter((f) => !info.features[f]);
  const parts = [
    `${name}${info.isFallback ? ' (software)' : ''}`,
    `features ${granted.join(', ') || 'none'}${missing.length ? ` (not offered: ${missing.join(', ')})` : ''}`,
    info.features.subgroups ? `subgroup ${info.subgroupSizes.min}-${info.subgroupSizes.max}` : '',
    info.subgroupMatrixConfigs.length
      ? `subgroup matrices ${info.subgroupMatrixConfigs.map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`).join(', ')}`
      : '',
    `max binding ${Math.round(info.limits.maxStorageBufferBindingSize / 2 ** 20)} MiB`,
    info.gemm?.summary ?? '',
  ];
  return parts.filter(Boolean).join('; ');
}

function noAdapter(why: string, cause?: unknown): WebGpuUnavailableError {
  return new WebGpuUnavailableError(
    'no-adapter',
    `WebGPU (Dawn) found no adapter (${why}); on a machine without a GPU run scripts/install-lavapipe.sh (Mesa lavapipe from bookworm-backports)`,
    { cause },
  );
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.trim();
}

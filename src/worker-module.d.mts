/** The URL to import for a worker thread's module (worker-module.mjs). */
export function workerModule(entry: string, name: string, fromSrc: string): Promise<URL>;

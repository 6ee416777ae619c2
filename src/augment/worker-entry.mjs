// Pool threads start here: they do not inherit the main thread's TypeScript loader, so register tsx first.
import { register } from 'tsx/esm/api';

register();
const { default: augment } = await import('./worker.ts');
export default augment;

// Node module hooks standing in for the host's WIT import, so the step's own
// file runs under `node --test`: `stephost:step/config@0.1.0` resolves to a
// module reading the Map a test put in globalThis.stephostConfig. A test
// registers it with `register('./wit-host.mjs', import.meta.url)`.
// (`stephost new --lang js` writes this same file into new projects.)

const CONFIG = 'stephost:step/config@0.1.0';

export async function resolve(specifier, context, next) {
  if (specifier === CONFIG) {
    return { url: `stephost-test:${specifier}`, shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (url === `stephost-test:${CONFIG}`) {
    const source = `
      const settings = () => globalThis.stephostConfig ?? new Map();
      export function get(key) { return settings().get(key); }
      export function getAll() { return [...settings()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)); }
    `;
    return { format: 'module', source, shortCircuit: true };
  }
  return next(url, context);
}

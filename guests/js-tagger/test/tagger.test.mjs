// The tagger's logic, tested natively (`npm test`): no host, no wasm. The
// step's WIT import is served by test/wit-host.mjs; each test sets the
// settings it wants in `globalThis.stephostConfig`.

import assert from 'node:assert/strict';
import { register } from 'node:module';
import test from 'node:test';

register('./wit-host.mjs', import.meta.url);
const { handler } = await import('../tagger.js');

function event(data, extensions = []) {
  return {
    id: '1', source: '/test', specversion: '1.0', type: 'dev.stephost.test',
    datacontenttype: 'text/plain', extensions: [...extensions],
    data: data === undefined ? undefined : new TextEncoder().encode(data),
  };
}

function handle(e, settings = {}) {
  globalThis.stephostConfig = new Map(Object.entries(settings));
  return handler.handle(e);
}

test('tags the configured keywords in configuration order', () => {
  const out = handle(event('Love it, but it came BROKEN.'), { keywords: 'broken, love, refund' });
  assert.deepEqual(out.extensions, [['keywords', 'broken,love']]);
  assert.equal(new TextDecoder().decode(out.data), 'Love it, but it came BROKEN.');
});

test('an event without keywords passes untagged', () => {
  const out = handle(event('fine', [['keywords', 'stale']]));
  assert.deepEqual(out.extensions, []);
});

test('the extension name is configurable and checked', () => {
  assert.deepEqual(handle(event('refund please'), { extension: 'jstags' }).extensions, [['jstags', 'refund']]);
  assert.throws(() => handle(event('x'), { extension: 'Not-Valid' }), (e) => e.tag === 'fatal');
});

test('missing or binary data is fatal', () => {
  assert.throws(() => handle(event(undefined)), (e) => e.tag === 'fatal');
  const binary = { ...event(''), data: new Uint8Array([0xff, 0xfe]) };
  assert.throws(() => handle(binary), (e) => e.tag === 'fatal');
});

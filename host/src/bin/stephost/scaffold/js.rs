//! `stephost new NAME --lang js`: a step in JavaScript for jco's
//! `componentize` (npm; componentize-js embeds SpiderMonkey). The native test
//! runs the step's own file under `node --test`, with Node module hooks
//! serving the WIT import `stephost:step/config`.

use super::{readme, step_yaml, wit_files};

/// The jco release the project pins (and tests/run.sh tests). jco 1.35.0
/// cannot read a WIT directory on this platform ("failed to get path
/// metadata"); 1.34.0 can.
pub(super) const JCO: &str = "1.34.0";

/// The project's files as (path, text).
pub(super) fn files(name: &str) -> Vec<(String, String)> {
    let wasm = format!("{name}.wasm");
    let mut files = vec![
        ("step.js".to_string(), STEP_JS.to_string()),
        ("test/step.test.mjs".to_string(), STEP_TEST.to_string()),
        ("test/wit-host.mjs".to_string(), WIT_HOST.to_string()),
        (
            "package.json".to_string(),
            PACKAGE_JSON
                .replace("{name}", name)
                .replace("{wasm}", &wasm)
                .replace("{jco}", JCO),
        ),
        (
            "step.yaml".to_string(),
            step_yaml(name, &format!("./{wasm}"), "32Mi"),
        ),
        ("README.md".to_string(), readme(name, BUILD, &wasm)),
        (
            ".gitignore".to_string(),
            format!("/{wasm}\n/node_modules/\n"),
        ),
    ];
    files.extend(wit_files());
    files
}

const BUILD: &str = "\
npm install                                          # jco, from package.json
npm test                                             # the logic, natively (node --test)
npm run build                                        # jco componentize → {wasm}
";

// `--disable http fetch-event`: the step world imports no wasi:http, and the
// host links none, so the runtime's fetch support is left out.
const PACKAGE_JSON: &str = r#"{
  "name": "{name}",
  "private": true,
  "type": "module",
  "scripts": {
    "build": "jco componentize step.js --wit wit --world-name step --disable http fetch-event -o {wasm}",
    "test": "node --test test/step.test.mjs"
  },
  "devDependencies": {
    "@bytecodealliance/jco": "{jco}"
  }
}
"#;

const STEP_JS: &str = r#"// A stephost step: receives one CloudEvent and returns the event to hand on,
// undefined to drop it, or throws { tag: 'retryable', val } (≙ 5xx, retried)
// or { tag: 'fatal', val } (≙ 4xx, to the dead-letter sink).
//
// The event: { id, source, specversion, type, subject, time, datacontenttype,
// dataschema, extensions: [[name, value], ...], data: Uint8Array | undefined }.

import { get } from 'stephost:step/config@0.1.0';

export const handler = {
  handle(event) {
    if (event.data === undefined || event.data === null) {
      throw { tag: 'fatal', val: 'the event has no data' };
    }
    let text;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(event.data);
    } catch (e) {
      throw { tag: 'fatal', val: `the event's data is not UTF-8 text: ${e}` };
    }
    // The manifest's `spec.config`, read per event.
    const suffix = get('suffix') ?? '!';
    event.data = new TextEncoder().encode(text + suffix);
    event.extensions = event.extensions.filter(([k]) => k !== 'handledby');
    event.extensions.push(['handledby', 'my-step']);
    return event;
  },
};
"#;

const STEP_TEST: &str = r#"// The step's logic, natively (`npm test`): no host, no wasm. The WIT import
// is served by ./wit-host.mjs from the settings in globalThis.stephostConfig.

import assert from 'node:assert/strict';
import { register } from 'node:module';
import test from 'node:test';

register('./wit-host.mjs', import.meta.url);
const { handler } = await import('../step.js');

function textEvent(text) {
  return {
    id: '1', source: '/test', specversion: '1.0', type: 'dev.stephost.test',
    datacontenttype: 'text/plain', extensions: [], data: new TextEncoder().encode(text),
  };
}

function handle(event, settings = {}) {
  globalThis.stephostConfig = new Map(Object.entries(settings));
  return handler.handle(event);
}

test('appends the configured suffix', () => {
  const out = handle(textEvent('hello'), { suffix: '?' });
  assert.equal(new TextDecoder().decode(out.data), 'hello?');
  assert.deepEqual(out.extensions, [['handledby', 'my-step']]);
});

test('binary data is fatal', () => {
  const event = { ...textEvent(''), data: new Uint8Array([0xff]) };
  assert.throws(() => handle(event), (e) => e.tag === 'fatal');
});
"#;

/// The module hooks of the native test: the example step's file, so the two
/// cannot drift apart.
const WIT_HOST: &str = include_str!("../../../../../guests/js-tagger/test/wit-host.mjs");

// A stephost step in JavaScript: the keyword tagger (the same step as
// guests/py-tagger, for a like-for-like comparison).
//
// It reads the event's data as text, finds which of its configured keywords
// occur in it (whole words, case insensitive) and adds them, comma-separated
// in configuration order, as an extension attribute. The data and every other
// attribute pass through as they came; an event with no keyword is forwarded
// without the extension.
//
// Config (the WasmStep's `spec.config`):
//   keywords   comma-separated words to look for (default: "refund,broken,love")
//   extension  the extension attribute to set (default: "keywords")
//
// Built with jco (componentize-js) against the SDK's WIT:
//   jco componentize tagger.js --wit ../sdk/wit --world-name step -o js-tagger.wasm

import { get } from 'stephost:step/config@0.1.0';

const DEFAULT_KEYWORDS = 'refund,broken,love';
const WORD = /[a-z0-9']+/g;
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;

function fatal(message) {
  // A thrown value becomes the `err` of `handle`'s result.
  return { tag: 'fatal', val: message };
}

export const handler = {
  handle(event) {
    const name = get('extension') ?? 'keywords';
    if (!EXTENSION_NAME.test(name)) {
      throw fatal(`config extension=${JSON.stringify(name)} is not a CloudEvents attribute name`);
    }
    if (event.data === undefined || event.data === null) {
      throw fatal('the event has no data to tag');
    }
    let text;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(event.data);
    } catch (e) {
      throw fatal(`the event's data is not UTF-8 text: ${e}`);
    }
    const wanted = (get('keywords') ?? DEFAULT_KEYWORDS).split(',').map((k) => k.trim().toLowerCase());
    const words = new Set(text.toLowerCase().match(WORD) ?? []);
    const found = wanted.filter((k) => k !== '' && words.has(k));
    event.extensions = event.extensions.filter(([k]) => k !== name);
    if (found.length > 0) {
      event.extensions.push([name, found.join(',')]);
    }
    return event;
  },
};

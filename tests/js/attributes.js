// Round-trip text attributes through stephost with the JavaScript CloudEvents
// SDK (npm `cloudevents`, the major version named by the second argument,
// installed side by side by tests/run.sh): send one event in binary and one
// in structured mode, read stephost's binary-mode answer with the same SDK,
// print what it read.
//
// Usage: node attributes.js http://127.0.0.1:PORT cloudevents10
// Output: one JSON object per line: {"mode", "status", "subject", "note", "data"}.
"use strict";

const http = require("node:http");

const [url, sdk] = process.argv.slice(2);
const { CloudEvent, HTTP } = require(sdk);

const SUBJECT = "hello world";
const NOTE = '50% off "now" (a%41)';

function post(target, message) {
  return new Promise((resolve, reject) => {
    const request = http.request(target, { method: "POST", headers: message.headers }, (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () =>
        resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    request.on("error", reject);
    request.setTimeout(60000, () => request.destroy(new Error("timed out")));
    request.end(message.body);
  });
}

async function send(mode) {
  const event = new CloudEvent({
    id: `js-${mode}`,
    source: "/js-sdk",
    type: "dev.stephost.js",
    datacontenttype: "text/plain",
    subject: SUBJECT,
    note: NOTE,
    data: "hi",
  });
  const message = mode === "binary" ? HTTP.binary(event) : HTTP.structured(event);
  const response = await post(url, message);
  const reply = HTTP.toEvent({ headers: response.headers, body: response.body });
  console.log(JSON.stringify({
    mode,
    status: response.status,
    subject: reply.subject,
    note: reply.note,
    data: reply.data,
  }));
}

(async () => {
  await send("binary");
  await send("structured");
})().catch((error) => {
  console.error(error);
  process.exit(1);
});

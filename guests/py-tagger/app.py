"""A stephost step in Python: the keyword tagger.

It reads the event's data as text (any content type that is text or JSON),
finds which of its configured keywords occur in it (whole words, case
insensitive) and adds them, comma-separated in configuration order, as an
extension attribute. The data and every other attribute pass through as they
came; an event with no keyword is forwarded without the extension.

Config (the WasmStep's `spec.config`):
  keywords   comma-separated words to look for (default: "refund,broken,love")
  extension  the extension attribute to set (default: "keywords"; CloudEvents
             names are lower-case letters and digits)

Built with componentize-py against the SDK's WIT:
  componentize-py -d ../sdk/wit -w step componentize app -o py-tagger.wasm
"""

import re
from typing import Optional

from wit_world import exports
from componentize_py_types import Err
from wit_world.imports import config
from wit_world.imports.types import CloudEvent, StepError_Fatal

DEFAULT_KEYWORDS = "refund,broken,love"
WORD = re.compile(r"[a-z0-9']+")
EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")


class Handler(exports.Handler):
    def handle(self, event: CloudEvent) -> Optional[CloudEvent]:
        name = config.get("extension") or "keywords"
        if not EXTENSION_NAME.fullmatch(name):
            raise Err(StepError_Fatal(f"config extension={name!r} is not a CloudEvents attribute name"))
        if event.data is None:
            raise Err(StepError_Fatal("the event has no data to tag"))
        try:
            text = event.data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Err(StepError_Fatal(f"the event's data is not UTF-8 text: {e}"))
        wanted = [k.strip().lower() for k in (config.get("keywords") or DEFAULT_KEYWORDS).split(",")]
        words = set(WORD.findall(text.lower()))
        found = [k for k in wanted if k and k in words]
        event.extensions = [(k, v) for (k, v) in event.extensions if k != name]
        if found:
            event.extensions.append((name, ",".join(found)))
        return event

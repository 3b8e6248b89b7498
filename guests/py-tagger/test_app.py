"""The tagger's logic, tested natively (`python3 -m unittest`): no host, no wasm.

Needs the bindings generated for the host's Python first, as for an editor:
  componentize-py -d ../sdk/wit -w step bindings .
The generated `config.get` only raises off wasm, so each test patches it with
the settings it wants.
"""

import unittest
from unittest import mock

from componentize_py_types import Err
from wit_world.imports.types import CloudEvent, StepError_Fatal

import app


def event(data, extensions=()):
    return CloudEvent(
        id="1", source="/test", specversion="1.0", type="dev.stephost.test",
        subject=None, time=None, datacontenttype="text/plain", dataschema=None,
        extensions=list(extensions), data=data,
    )


def handle(e, settings):
    with mock.patch("wit_world.imports.config.get", side_effect=settings.get):
        return app.Handler().handle(e)


class TaggerTest(unittest.TestCase):
    def test_tags_the_configured_keywords_in_configuration_order(self):
        out = handle(event(b"Love it, but it came BROKEN."), {"keywords": "broken, love, refund"})
        self.assertEqual(out.extensions, [("keywords", "broken,love")])
        self.assertEqual(out.data, b"Love it, but it came BROKEN.")

    def test_an_event_without_keywords_passes_untagged(self):
        out = handle(event(b"fine", [("keywords", "stale")]), {})
        self.assertEqual(out.extensions, [])

    def test_the_extension_name_is_configurable_and_checked(self):
        out = handle(event(b"refund please"), {"extension": "pytags"})
        self.assertEqual(out.extensions, [("pytags", "refund")])
        with self.assertRaises(Err) as caught:
            handle(event(b"x"), {"extension": "Not-Valid"})
        self.assertIsInstance(caught.exception.value, StepError_Fatal)

    def test_missing_or_binary_data_is_fatal(self):
        for data in (None, b"\xff\xfe"):
            with self.assertRaises(Err) as caught:
                handle(event(data), {})
            self.assertIsInstance(caught.exception.value, StepError_Fatal)


if __name__ == "__main__":
    unittest.main()

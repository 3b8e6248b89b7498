#!/usr/bin/env bash
# Builds the Python and JavaScript example steps (guests/py-tagger,
# guests/js-tagger) with their standard toolchains, installed from their own
# registries: componentize-py from PyPI (into target/toolchains/python, a
# venv) and jco from npm (guests/js-tagger/node_modules, from its lock file).
# Runs each step's native unit tests first. Used by tests/run.sh; the tests
# and the `polyglot` benchmark read the two .wasm files it leaves in the
# guests' directories.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/toolchains/python
if [ ! -x "$venv/bin/python3" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r guests/py-tagger/requirements.txt
(
  cd guests/py-tagger
  # componentize-py refuses to overwrite bindings: regenerate them from scratch.
  rm -rf wit_world componentize_py_async_support componentize_py_types.py componentize_py_runtime.pyi poll_loop.py
  ../../"$venv"/bin/componentize-py -d ../sdk/wit -w step bindings .
  ../../"$venv"/bin/python3 -m unittest --quiet test_app
  ../../"$venv"/bin/componentize-py -d ../sdk/wit -w step componentize app -o py-tagger.wasm
)
npm ci --prefix guests/js-tagger --no-audit --no-fund --loglevel=error
npm --prefix guests/js-tagger test --silent
npm --prefix guests/js-tagger run build --silent

#!/usr/bin/env bash
# The main job: install into .venv, then run the embedded demo end to end on a synthetic
# talking-face corpus (generation, preprocessing, two k-means iterations of pretraining with
# fairseq-hydra-train, batch scoring, report). Extra arguments go to the demo, e.g.
# `bash scripts/demo.sh --quick` (a few minutes) or `--work-dir DIR`. Reruns reuse finished stages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m sf_fairseq.eval.demo "$@"

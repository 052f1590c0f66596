#!/usr/bin/env bash
# Collect the admin's and API docs' static files into STATIC_ROOT (served by WhiteNoise): the
# image's build step, also run by CI (tests/test_deployment_image.py). Base settings: collecting
# files needs no database and no secrets, so the build never sees production ones.
set -euo pipefail
python=${1:-python}
DJANGO_SETTINGS_MODULE=churnshield.settings.base "$python" manage.py collectstatic --noinput --verbosity 0

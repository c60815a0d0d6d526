"""Print the OpenAPI document the API function serves at GET /openapi.json, as generated at
build time: configured bounds (holdSeconds) are the settings' defaults, which are the template's
Parameter defaults. A deployment serves its own settings' bounds.

python -m tools.openapi > docs/openapi.json     (make openapi)
"""

from __future__ import annotations

import json
import os
import sys


def document() -> dict[str, object]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    from stockhold.settings import Settings
    from tests.helpers import load_function

    doc: dict[str, object] = json.loads(load_function("api").openapi_json(Settings()))
    return doc


if __name__ == "__main__":
    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")

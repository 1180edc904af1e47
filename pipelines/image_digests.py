"""Images by digest: `make images-push` pushes the project's images and records, per tagged name, the
pinned reference the registry gave it (`registry/name@sha256:…`) in build/image-digests.json; a compiled
package then names each step's image by that digest, and the MLflow run records it, so a model version
names the exact code that trained it (a tag such as 0.1.0 can be pushed again over other code)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cxr.errors import CxrError
from cxr.params import project_root

DIGESTS_ENV = "CXR_IMAGE_DIGESTS"  # another digests file than build/image-digests.json


def digests_file() -> Path:
    return Path(os.environ.get(DIGESTS_ENV) or project_root() / "build" / "image-digests.json")


def load_digests(path: Path | None = None) -> dict[str, str]:
    """tagged reference -> pinned reference, from the file `make images-push` writes ({} when there is none)."""
    path = path or digests_file()
    if not path.is_file():
        return {}
    try:
        digests = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CxrError(f"{path} is not JSON ({exc.msg}); run `make images-push` again or delete it.") from exc
    bad = [ref for ref in digests.values() if "@sha256:" not in str(ref)]
    if bad:
        raise CxrError(f"{path} holds references without a digest ({bad[0]}); run `make images-push` again.")
    return digests


def pinned(references: dict[str, str], digests: dict[str, str]) -> dict[str, str]:
    """Each reference by its digest where one was recorded for exactly that name and tag."""
    return {key: digests.get(ref, ref) for key, ref in references.items()}

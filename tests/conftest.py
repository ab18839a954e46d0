import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny():
    """The built-in tiny model (``load_model("tiny")``), loaded once per session; skipped without torch."""
    pytest.importorskip("torch")
    from edgediff.runtime.models import load_model

    return load_model("tiny")

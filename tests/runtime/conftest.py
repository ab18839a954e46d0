import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def tiny():
    from edgediff.runtime.models import load_model

    return load_model("tiny")

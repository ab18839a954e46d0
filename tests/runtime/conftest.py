import pytest
from runtime_dirs import build_sd_directory

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def sd_dir(tmp_path_factory):
    return build_sd_directory(tmp_path_factory.mktemp("sd") / "pipe")

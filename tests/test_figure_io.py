import csv
import json

import pytest

from edgediff.figure_io import Figure, markdown, markdown_table, pyplot, write_csv, write_figure
from edgediff.reproduce import REGISTRY, FigureSpec, reproduce


def test_write_csv_header_from_first_row_or_columns(tmp_path):
    rows = [{"b": 1, "a": 0.5}, {"b": 2, "a": 1.5}]
    assert write_csv(tmp_path / "x.csv", rows).read_text().splitlines() == ["b,a", "1,0.5", "2,1.5"]
    assert write_csv(tmp_path / "y.csv", [], ["a", "b"]).read_text().splitlines() == ["a,b"]


def test_markdown_table_formats():
    assert markdown_table(["n", "x"], [[3, 0.123456]]) == ["| n | x |", "| --- | --- |", "| 3 | 0.1235 |"]
    assert markdown_table(["n", "x"], [[3, 0.123456]], ["", ".1f"])[-1] == "| 3 | 0.1 |"
    assert markdown("t", ["a", "", "b"]) == "# t\n\na\n\nb\n"


def test_write_figure_writes_each_given_part_in_order(tmp_path):
    fig, ax = pyplot().subplots()
    ax.plot([0, 1], [1, 0])
    figure = Figure("f", rows=[{"x": 1}], figure=fig, summary="# f\n", data={"k": [1, 2]})
    paths = write_figure(figure, tmp_path)
    assert [p.name for p in paths] == ["f.png", "f.json", "f.csv", "f.md"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths[1].read_text()) == {"k": [1, 2]}
    assert list(csv.DictReader(paths[2].open())) == [{"x": "1"}]
    assert paths[3].read_text() == "# f\n"
    assert write_figure(Figure("g", rows=[{"y": 2}]), tmp_path) == [tmp_path / "g.csv"]


def _fake_figure(out_dir, *, quick=False, seed=0, **options):
    return [Figure("fake", rows=[{"quick": quick, "seed": seed, **options}], summary="# fake\n")]


def test_reproduce_takes_a_function_or_spec_and_passes_options(tmp_path):
    paths = reproduce(_fake_figure, tmp_path / "a", quick=True, seed=3, options={"workers": 2}, ray="addr")
    assert [p.name for p in paths] == ["fake.csv", "fake.md"]
    assert list(csv.DictReader(paths[0].open())) == [{"quick": "True", "seed": "3", "workers": "2", "ray": "addr"}]
    spec = FigureSpec(f"{__name__}:_fake_figure", "a test figure")
    assert [p.name for p in reproduce(spec, tmp_path / "b")] == ["fake.csv", "fake.md"]
    single = reproduce(lambda out_dir, **_: Figure("one", rows=[{"a": 1}]), tmp_path / "c")  # one Figure, no list
    assert single == [tmp_path / "c" / "one.csv"]


def test_every_registered_figure_loads():
    for spec in REGISTRY.values():
        assert callable(spec.load())


@pytest.mark.parametrize("name", ["fig8a", "cache-fig5", "cache-fig6"])
@pytest.mark.slow
def test_cheap_figures_return_rows_figure_and_summary(tmp_path, name):
    figure = REGISTRY[name].load()(tmp_path, quick=True, seed=0)
    assert isinstance(figure, Figure) and figure.name == name
    assert figure.rows and figure.figure is not None and figure.summary.startswith(f"# {name}")
    pyplot().close(figure.figure)
    assert list(tmp_path.iterdir()) == []  # the figure function writes nothing; reproduce does

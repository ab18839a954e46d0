"""Issue 19's first-hour fixes on the command line: one help formatter, one-line errors with their
exit codes, defaults, refusals before any work."""

import argparse
import json
import re
import subprocess
import sys

import pytest

from edgediff.cli import build_parser, main
from edgediff.cli._args import default_threads
from helpers import run_cli


def commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_top_level_help_describes_the_tool_and_exit_codes():
    text = " ".join(build_parser().format_help().split())
    assert "research tool and a serving tool" in text
    assert "4 the edge service did not answer in time" in text


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_option_has_help_and_shows_its_default(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside a default
    parser = commands()[name]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}: no help"
        default = action.default
        if action.option_strings and default not in (None, False, argparse.SUPPRESS, []):
            shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
            assert f"(default: {shown})" in " ".join(text.split()), f"{name} {action.option_strings}"
    assert not re.search(r"\(default [0-9.]+\)", text), f"{name}: a default written by hand"


def test_serve_policy_help_lists_every_registered_policy():
    from edgediff.offload.policies import REGISTRY

    text = " ".join(commands()["serve"].format_help().split())
    for name in REGISTRY:
        assert name in text


@pytest.mark.slow
def test_argparse_error_is_one_line_exit_2():
    result = run_cli("instance", "--users", "x")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgediff instance: error: argument --users")
    assert "usage:" not in result.stderr


def test_verbose_works_after_the_command(capsys):
    args = build_parser().parse_args(["instance", "--users", "2", "-v"])
    assert args.verbose is True
    assert build_parser().parse_args(["-v", "instance", "--users", "2"]).verbose is True
    assert build_parser().parse_args(["instance", "--users", "2"]).verbose is False


def test_instance_seed_defaults_to_0_and_output_says_what_it_wrote(tmp_path, capsys):
    path = tmp_path / "i.json"
    assert main(["instance", "--users", "3", "-o", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {path}: 3 users, G = 8, B_max = 20") and "seed 0" in out
    assert main(["instance", "--users", "3", "--seed", "0"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(path.read_text())


@pytest.mark.parametrize(
    "user, message",
    [
        (
            {"id": "a", "k": 0.1, "h": 0.01, "alpah": 2.0, "request_time": 0.1},
            "users.0.alpah: unknown field; did you mean 'alpha'?",
        ),
        ({"id": "a", "k": 0.1, "h": 0.01, "alpha": 2.0, "request_tme": 0.1}, "did you mean 'request_time'?"),
    ],
)
def test_misspelt_instance_field_is_unknown_with_a_suggestion(tmp_path, capsys, user, message):
    path = tmp_path / "i.json"
    path.write_text(json.dumps({"users": [user]}))
    assert main(["solve", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Field required" not in err


def test_misspelt_top_level_field(tmp_path, capsys):
    path = tmp_path / "i.json"
    path.write_text(json.dumps({"Bmax": 3, "users": [{"id": "a", "k": 0.1, "h": 0.01, "alpha": 2, "request_time": 0}]}))
    assert main(["solve", str(path)]) == 2
    assert "Bmax: unknown field; did you mean 'B_max'?" in capsys.readouterr().err


def test_cache_sim_has_a_default_policy():
    assert build_parser().parse_args(["cache-sim"]).policy == "lcbfu"


def test_measure_reuse_model_defaults_to_tiny():
    assert build_parser().parse_args(["measure-reuse"]).model == "tiny"


def test_compare_states_units(tmp_path, capsys):
    assert main(["compare", "--users", "3", "--cases", "2", "--policies", "exact,b3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(decision time in ms)" in out and "mean_decision_time_s in seconds" in out


def test_generate_server_without_scheme_is_refused_before_loading(tmp_path, capsys):
    code = main(["generate", "--prompt", "x", "--server", "localhost:8000", "--out", str(tmp_path / "a.png")])
    assert code == 2
    assert "--server needs a URL with its scheme, e.g. http://localhost:8000" in capsys.readouterr().err


def test_calibrate_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "p.json"
    out.write_text("{}")
    assert main(["calibrate", "--out", str(out)]) == 2
    assert "--out would overwrite" in capsys.readouterr().err and out.read_text() == "{}"


def test_train_dqn_refuses_to_overwrite_a_checkpoint_without_force(tmp_path, capsys):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert main(["train-dqn", "--episodes", "1", "--out", str(tmp_path)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (tmp_path / "model.safetensors").read_bytes() == b"x"


@pytest.mark.slow
def test_cuda_without_cuda_is_one_line(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli("generate", "--prompt", "x", "--device", "cuda", "--out", str(tmp_path / "a.png"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"edgediff generate: error: --device cuda: CUDA is not available here (torch {torch.__version__}); "
        "use --device cpu"
    ]


def test_misspelt_model_lists_the_built_in_ones(tmp_path, capsys):
    pytest.importorskip("torch")
    assert main(["generate", "--prompt", "x", "--model", "tinyy", "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "tiny, tiny-italic, tiny-bold, tiny-small" in err and "did you mean 'tiny'" in err


def test_default_threads():
    assert default_threads({"OMP_NUM_THREADS": "3"}) is None  # the user's choice is kept
    threads = default_threads({})
    assert 1 <= threads <= 4


@pytest.mark.slow
def test_default_threads_reach_torch():
    pytest.importorskip("torch")
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    code = "import torch, edgediff.cli as c; c.set_default_threads(); print(torch.get_num_threads())"
    # torch already imported: set_num_threads applies the default
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert int(out) == default_threads({})


@pytest.mark.slow
def test_cli_start_loads_no_heavy_library():
    code = (
        "import sys, edgediff.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('torch', 'scipy', 'pydantic', 'diffusers', 'httpx', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"

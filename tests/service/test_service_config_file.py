"""``serve --config FILE`` and every service config error naming its field as a dotted path."""

import json

import pytest

from edgediff.cli import main
from edgediff.service.config import ServiceConfig, ServiceConfigError, load_service_config, service_options


def test_a_config_file_takes_flat_keys_and_part_sections(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('policy = "b1"\n[scheduling]\nwindow_s = 1.5\nb_max = 6\n[caching]\ncache_gb = 0.5\n')
    options = load_service_config(path)
    assert options == {"policy": "b1", "window_s": 1.5, "b_max": 6, "cache_gb": 0.5}
    as_json = tmp_path / "edge.json"
    as_json.write_text(json.dumps({"policy": "b1", "scheduling": {"window_s": 1.5, "b_max": 6}, "cache_gb": 0.5}))
    assert load_service_config(as_json) == options
    # a flag left at its default keeps the file's value; a flag given otherwise overrides it
    merged = service_options(path, {"window_s": ServiceConfig.defaults()["window_s"], "b_max": 4, "gpus": 2})
    assert (merged["window_s"], merged["b_max"], merged["gpus"], merged["policy"]) == (1.5, 4, 2, "b1")
    assert service_options(None, {"b_max": 4}) == {"b_max": 4}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[scheduling]\nwindw_s = 1\n", "edge.toml: scheduling.windw_s: unknown field; did you mean 'window_s'?"),
        ("polcy = 'b1'\n", "edge.toml: polcy: unknown field; did you mean 'policy'?"),
        ("[http]\nwindow_s = 1\n", r"edge.toml: http.window_s: unknown field; it belongs in \[scheduling\]"),
        ("[scheduling]\nwindow_s = 0\n", "edge.toml: scheduling.window_s must be > 0, got 0"),
        ("cache_gb = -1\n", "edge.toml: caching.cache_gb must be >= 0, got -1"),
        ("window_s = \n", "edge.toml: not valid TOML"),
        ("[scheduling]\nprofile_from_steps = 1\n", "edge.toml: scheduling.profile_from_steps must be true or false"),
    ],
)
def test_a_bad_config_file_names_the_field(tmp_path, text, message):
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ServiceConfigError, match=message):
        load_service_config(path)


def test_service_config_errors_name_the_part():
    with pytest.raises(ServiceConfigError, match=r"^http.max_connections must be > 0, got 0$"):
        ServiceConfig(max_connections=0)
    with pytest.raises(ServiceConfigError, match=r"did you mean 'window_s' \(scheduling.window_s\)\?"):
        ServiceConfig(windw_s=1)


def test_serve_s_profile_from_steps_flag_sets_the_config_and_overrides_the_file(tmp_path):
    from edgediff.cli import build_parser
    from edgediff.cli._serve_options import serve_options_flags

    on, off = (
        serve_options_flags(build_parser().parse_args(["serve", *flag])) for flag in ([], ["--no-profile-from-steps"])
    )
    assert on["profile_from_steps"] is True and off["profile_from_steps"] is False
    path = tmp_path / "edge.toml"
    path.write_text("[scheduling]\nprofile_from_steps = true\n")
    assert service_options(path, off)["profile_from_steps"] is False  # a flag given against the default wins
    path.write_text("[scheduling]\nprofile_from_steps = false\n")
    assert service_options(path, on)["profile_from_steps"] is False  # a flag left at its default: the file's


@pytest.mark.slow  # the serve command's imports
def test_serve_refuses_a_bad_config_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "edge.toml"
    path.write_text("[scheduling]\nwindw_s = 1\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scheduling.windw_s: unknown field; did you mean 'window_s'?" in err[0]


def test_the_edge_model_dtype_is_a_checked_setting(tmp_path, capsys):
    with pytest.raises(ServiceConfigError, match="runtime.dtype must be one of float32, float16, bfloat16, got 'f8'"):
        ServiceConfig(dtype="f8")
    assert ServiceConfig(dtype="bfloat16").runtime.dtype == "bfloat16"
    with pytest.raises(SystemExit):  # argparse's choices: one line, exit 2
        main(["serve", "--dtype", "float64"])
    assert "--dtype: invalid choice: 'float64'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_edge_runs_its_model_in_the_configured_dtype():
    from edgediff.service.denoiser import EdgeDenoiser
    from edgediff.service.metrics import ServiceMetrics

    config = ServiceConfig(dtype="bfloat16", edge_profile=(0.01, 0.01), engine_process=False)
    assert str(EdgeDenoiser(config, ServiceMetrics()).model.dtype).endswith("bfloat16")

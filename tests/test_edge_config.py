"""The edge configuration: TOML file, CLI flags over it, and errors that say what to fix."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from edgecodec.cli import main
from edgecodec.edge import config as cfg
from edgecodec.errors import ConfigError
from tests.stream_support import SECRET


def parse(*argv):
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    return parser.parse_args(list(argv))


def write(tmp_path, text):
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return str(path)


GOOD = f"""
[camera]
id = "yard"
source = "synthetic"
fps = 12
[encode]
target_kbps = 800
[link]
server = "tls://10.0.0.2:7878"
secret = "{SECRET}"
tls_pin = "sha256:{'ab' * 32}"
[spool]
max_mb = 64
"""


def test_file_values_are_used_and_flags_override_them(tmp_path):
    path = write(tmp_path, GOOD)
    loaded = cfg.load(path)
    assert (loaded.camera.id, loaded.camera.fps, loaded.encode.target_kbps) == ("yard", 12.0, 800.0)
    overridden = cfg.load(path, parse("--fps", "5", "--camera-id", "gate"))
    assert (overridden.camera.id, overridden.camera.fps, overridden.spool.max_mb) == ("gate", 5.0, 64.0)


def test_every_option_has_a_distinct_flag_help_and_a_valid_default():
    flags = [f.metadata["flag"] for _, f in cfg._options()]
    assert len(flags) == len(set(flags)) and all(f.metadata["help"] for _, f in cfg._options())
    defaults = cfg.EdgeConfig()
    for section, f in cfg._options():
        check = f.metadata["check"]
        assert check is None or check(getattr(getattr(defaults, section), f.name)) is None, f.name


def test_unknown_sections_and_keys_suggest_the_closest_name(tmp_path):
    path = write(tmp_path, GOOD.replace("fps = 12", "fsp = 12") + "[camra]\nx = 1\n")
    with pytest.raises(ConfigError) as err:
        cfg.load(path)
    assert "unknown option 'fsp' (did you mean 'fps'?)" in str(err.value)
    assert "unknown section [camra] (did you mean [camera]?)" in str(err.value)


def test_all_wrong_types_and_ranges_are_reported_together(tmp_path):
    path = write(tmp_path, GOOD.replace("fps = 12", 'fps = "fast"').replace("max_mb = 64", "max_mb = -1"))
    with pytest.raises(ConfigError) as err:
        cfg.load(path)
    text = str(err.value)
    assert "[camera] fps = 'fast': must be a number" in text
    assert "[spool] max_mb = -1.0: must be between 1 and 1e+07" in text


def test_bad_flag_values_name_the_flag():
    with pytest.raises(ConfigError, match=r"flag --fps = 0.0: must be between"):
        cfg.load(None, parse("--fps", "0", "--secret", SECRET))


def test_a_missing_secret_is_explained():
    with pytest.raises(ConfigError, match="needs secret_file"):
        cfg.load(None, parse())


def test_server_url_and_source_are_checked(tmp_path):
    with pytest.raises(ConfigError) as err:
        cfg.load(None, parse("--server", "http://x", "--source", str(tmp_path / "missing.mp4"), "--secret", SECRET))
    assert "scheme must be one of" in str(err.value) and "nor an existing video file" in str(err.value)


def test_tls_options_need_a_tls_server():
    with pytest.raises(ConfigError, match="only apply to tls://"):
        cfg.load(None, parse("--tls-pin", "ab" * 32, "--secret", SECRET))


def test_invalid_toml_is_reported_with_the_file_name(tmp_path):
    with pytest.raises(ConfigError, match="edge.toml: not valid TOML"):
        cfg.load(write(tmp_path, "[camera\n"))


def test_spool_dir_defaults_to_systemds_state_directory():
    config = cfg.load(None, parse("--secret", SECRET, "--camera-id", "c1"))
    assert str(cfg.spool_dir(config, {"STATE_DIRECTORY": "/var/lib/edgecodec-edge"})) == "/var/lib/edgecodec-edge"
    assert str(cfg.spool_dir(config, {"XDG_STATE_HOME": "/s"})) == "/s/edgecodec/c1"
    explicit = dataclasses.replace(config, spool=cfg.SpoolConfig(dir="/data/spool"))
    assert str(cfg.spool_dir(explicit, {"STATE_DIRECTORY": "/x"})) == "/data/spool"


def test_printed_configuration_masks_the_secret_and_reads_back_the_same(tmp_path):
    config = cfg.load(write(tmp_path, GOOD))
    text = cfg.to_toml(config)
    assert SECRET not in text and "********" in text
    again = cfg.load(write(tmp_path, text.replace("********", SECRET)))
    assert again == config


def test_check_config_command_exits_0_on_a_good_file_and_1_with_explanations(tmp_path, capsys):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    good = write(tmp_path, f'[link]\nsecret_file = "{secret_file}"\n[spool]\ndir = "{tmp_path / "spool"}"\n')
    assert main(["edge", "--config", good, "--check-config"]) == 0
    assert "configuration OK" in capsys.readouterr().out
    bad = write(tmp_path, '[camera]\nfps = 0\n[link]\nsecret_file = "/nonexistent/secret"\n')
    assert main(["edge", "--config", bad, "--check-config"]) == 1
    err = capsys.readouterr().err
    assert "[camera] fps = 0.0: must be between" in err


def test_check_config_reports_an_unreadable_secret_file(tmp_path, capsys):
    bad = write(tmp_path, f'[link]\nsecret_file = "{tmp_path / "nope"}"\n[spool]\ndir = "{tmp_path}"\n')
    assert main(["edge", "--config", bad, "--check-config"]) == 1
    assert "cannot read secret file" in capsys.readouterr().err


def test_encoder_kind_is_checked_and_explained(tmp_path):
    assert cfg.load(None, parse("--secret", SECRET)).encode.encoder == "auto"
    with pytest.raises(ConfigError, match=r"\[encode\] encoder = 'fp16': must be one of auto, int8, float"):
        cfg.load(write(tmp_path, GOOD.replace("target_kbps = 800", 'target_kbps = 800\nencoder = "fp16"')))


def test_analysis_kind_is_checked_and_explained(tmp_path):
    assert cfg.load(None, parse("--secret", SECRET)).encode.analysis == "auto"
    assert cfg.load(None, parse("--secret", SECRET, "--analysis", "fast")).encode.analysis == "fast"
    with pytest.raises(ConfigError, match=r"\[encode\] analysis = 'tiny': must be one of auto, full, fast"):
        cfg.load(write(tmp_path, GOOD.replace("target_kbps = 800", 'target_kbps = 800\nanalysis = "tiny"')))

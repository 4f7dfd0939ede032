"""posterity.toml: validation with key paths, ${ENV} interpolation, the generated example."""

from __future__ import annotations

import subprocess
import sys

import pytest

from posterity.config import ConfigProblems, loads_config
from posterity.config.example import example_config

REC = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

GOOD = f"""
[repository]
url = "s3://bucket/prefix"
endpoint = "http://127.0.0.1:9000"
access_key_id = "${{TEST_AK}}"
secret_access_key = "${{TEST_SK}}"

[encryption]
recipients = ["{REC}"]

[sources.db]
kind = "postgres"
dsn = "postgresql://app:${{TEST_PW}}@localhost/posters"
"""


def test_valid_config_interpolates_environment(monkeypatch):
    monkeypatch.setenv("TEST_AK", "AKIA123")
    monkeypatch.setenv("TEST_SK", "s3cr3t-value")
    monkeypatch.setenv("TEST_PW", "pw-9876")
    cfg = loads_config(GOOD)
    assert cfg.repository.access_key_id.get_secret_value() == "AKIA123"
    assert cfg.source("db").dsn.get_secret_value() == "postgresql://app:pw-9876@localhost/posters"
    # Secrets are not shown by the models' repr.
    assert "s3cr3t-value" not in repr(cfg) and "pw-9876" not in repr(cfg)


def test_missing_environment_variable_names_the_key(monkeypatch):
    monkeypatch.delenv("TEST_AK", raising=False)
    monkeypatch.setenv("TEST_SK", "x")
    monkeypatch.setenv("TEST_PW", "x")
    with pytest.raises(ConfigProblems) as exc:
        loads_config(GOOD)
    assert any(p.startswith("repository.access_key_id: environment variable TEST_AK") for p in exc.value.problems)


def test_every_problem_is_reported_with_its_path():
    text = """
[repository]
url = "ftp://nowhere"
colour = "blue"

[encryption]
recipients = ["not-a-key"]

[sources.db]
kind = "postgres"

[sources.search]
kind = "elasticsearch"
"""
    with pytest.raises(ConfigProblems) as exc:
        loads_config(text)
    problems = "\n".join(exc.value.problems)
    assert "repository.url:" in problems and "unknown scheme" in problems
    assert "repository.colour:" in problems and "remove it" in problems
    assert "encryption.recipients:" in problems
    assert "sources.db.dsn:" in problems and "add it" in problems
    assert "sources.search.kind:" in problems and "elasticsearch" in problems
    assert REC not in problems


def test_toml_syntax_error_is_a_config_error():
    with pytest.raises(ConfigProblems) as exc:
        loads_config("[repository\nurl = 1")
    assert "not valid TOML" in exc.value.problems[0]


def test_example_config_is_valid_once_env_is_set(monkeypatch):
    monkeypatch.setenv("R2_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("R2_SECRET_ACCESS_KEY", "b")
    for var in ("MEILI_MASTER_KEY", "MEILISEARCH_API_KEY"):
        monkeypatch.setenv(var, "m")
    text = example_config()
    cfg = loads_config(text)
    assert cfg.sources, "the example shows at least one source"
    assert "kind = \"postgres\"" in text


def test_config_check_command_exits_2_with_paths(tmp_path):
    bad = tmp_path / "posterity.toml"
    bad.write_text('[repository]\nurl = "file:///tmp/x"\n[encryption]\nrecipients = []\n')
    proc = subprocess.run([sys.executable, "-m", "posterity", "--config", str(bad), "config", "check"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "encryption.recipients" in proc.stderr
    assert "Traceback" not in proc.stderr

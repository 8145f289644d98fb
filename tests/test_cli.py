import pytest

from shared.cli import main


def test_settings_prints_values_without_secrets(monkeypatch, capsys):
    monkeypatch.setenv("KIS_APP_KEY", "PSverysecretkey")
    monkeypatch.setenv("KIS_APP_SECRET", "verysecretsecret")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "budget=17" in out and "kis_app_key=***" in out
    assert "verysecret" not in out


def test_settings_error_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("GATEWAY_BATCH_SIZE", "40")
    assert main(["settings"]) == 2
    assert "GATEWAY_BATCH_SIZE" in capsys.readouterr().err


def test_subcommands_are_wired(capsys):
    for cmd in (["keys", "--help"], ["sim", "--help"], ["dev", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(cmd)
        assert done.value.code == 0
    out = capsys.readouterr().out
    assert "create" in out and "--port" in out


def test_settings_table_is_markdown(capsys):
    assert main(["settings-table"]) == 0
    assert capsys.readouterr().out.startswith("| Variable | Default | Meaning |")

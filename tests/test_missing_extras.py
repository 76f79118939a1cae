"""A program whose extra is not installed says which one to install instead of a ModuleNotFoundError traceback."""

from __future__ import annotations

import sys

import pytest


def _without(monkeypatch: pytest.MonkeyPatch, missing: str, *fresh: str) -> None:
    """Make `import missing` fail as on a daemon-only install; `fresh` modules must be imported anew."""
    monkeypatch.setitem(sys.modules, missing, None)
    for name in fresh:
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_sortline_train_without_tensorflow_names_the_extra(monkeypatch, tmp_path, capsys):
    from trainer.cli import EXIT_BAD_INPUT, main

    _without(monkeypatch, "tensorflow", "trainer.pipeline", "trainer.export", "trainer.fit", "trainer.features")
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "missing module 'tensorflow" in err and "pip install 'sortline[trainer-cpu]'" in err


def test_sortline_scrape_without_selenium_names_the_extra(monkeypatch, capsys):
    from scraper.cli import main

    _without(monkeypatch, "selenium", "scraper.app", "scraper.engine", "scraper.browser")
    assert main(["--help"]) == 2
    err = capsys.readouterr().err
    assert "missing module 'selenium" in err and "pip install 'sortline[scraper]'" in err


@pytest.mark.parametrize(
    ("section", "module", "fresh"), [("ui", "starlette", "edge.ui.server"), ("opcua", "asyncua", "edge.opcua")]
)
def test_a_daemon_part_without_its_extra_names_it(monkeypatch, tmp_path, capsys, color_bundle, section, module, fresh):
    pytest.importorskip("cv2", reason="the daemon needs the edge extra")
    from edge.cli import main

    _without(monkeypatch, module, fresh)
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\nbundle = "{color_bundle}"\nthreshold = 0.5\n'
                      f'[lanes]\nmap = {{ red = 1, green = 2, blue = 3 }}\n[{section}]\nenabled = true\n')  # fmt: skip
    assert main(["--config", str(config), "run"]) == 2
    err = capsys.readouterr().err
    assert f"{section}.enabled needs the {section} extra (missing {module}" in err
    assert f"pip install 'sortline[{section}]'" in err


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_sortline_train_on_a_keras_backend_that_is_not_installed_says_so(monkeypatch, tmp_path, capsys, how):
    from trainer.cli import EXIT_BAD_INPUT, main

    _without(monkeypatch, "torch")
    flag = ["--backend", "torch"] if how == "flag" else []
    if how == "environment":
        monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "o"), *flag]) == EXIT_BAD_INPUT
    assert "the torch backend is not installed (missing module 'torch'): pip install 'torch'" in capsys.readouterr().err

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


def test_the_page_without_the_ui_extra_names_it(monkeypatch, tmp_path, capsys, color_bundle):
    pytest.importorskip("cv2", reason="the daemon needs the edge extra")
    from edge.cli import main

    _without(monkeypatch, "starlette", "edge.ui.server")
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\nbundle = "{color_bundle}"\nthreshold = 0.5\n'
                      '[lanes]\nmap = { red = 1, green = 2, blue = 3 }\n[ui]\nenabled = true\n')  # fmt: skip
    assert main(["--config", str(config), "run"]) == 2
    err = capsys.readouterr().err
    assert "ui.enabled needs the ui extra (missing starlette" in err and "pip install 'sortline[ui]'" in err


def test_the_opcua_server_without_its_extra_names_it(monkeypatch, tmp_path, capsys, color_bundle):
    pytest.importorskip("cv2", reason="the daemon needs the edge extra")
    from edge.cli import main

    _without(monkeypatch, "asyncua", "edge.opcua")
    config = tmp_path / "edge.toml"
    config.write_text(f'[model]\nbundle = "{color_bundle}"\nthreshold = 0.5\n'
                      '[lanes]\nmap = { red = 1, green = 2, blue = 3 }\n[opcua]\nenabled = true\n')  # fmt: skip
    assert main(["--config", str(config), "run"]) == 2
    err = capsys.readouterr().err
    assert "opcua.enabled needs the opcua extra (missing asyncua" in err and "pip install 'sortline[opcua]'" in err


def test_sortline_train_on_a_keras_backend_that_is_not_installed_says_so(monkeypatch, tmp_path, capsys):
    from trainer.cli import EXIT_BAD_INPUT, main

    _without(monkeypatch, "torch")
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    assert "the torch backend is not installed (missing module 'torch'): pip install 'torch'" in capsys.readouterr().err

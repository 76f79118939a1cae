"""Settings from TOML and the command line, and site profiles as data."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scraper.cli import main
from scraper.config import SettingsError, load_settings
from scraper.profile import available_profiles, load_profile

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "scraper" / "examples" / "apparel.toml"
CLASSES = ("--classes", '{"jeans": ["men jeans"]}')


def _sortline_scrape(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m scraper` as a user runs it: what it prints, and its exit status."""
    command = [sys.executable, "-m", "scraper", *argv]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def test_the_example_config_is_the_apparel_line():
    settings = load_settings(["--config", str(EXAMPLE)])
    assert settings.classes == {"jeans": ["men jeans"], "trousers": ["men trousers"], "saree": ["saree"]}
    assert settings.site == "amazon" and settings.politeness.obey_robots


def test_the_command_line_overrides_single_toml_values(tmp_path):
    config = tmp_path / "scrape.toml"
    config.write_text(
        'per_class = 5\n[classes]\njeans = ["men jeans"]\n[politeness]\npage_delay_s = 7\nhost_interval_s = 2\n'
    )
    settings = load_settings(["--config", str(config), "--politeness.page-delay-s", "1.5", "-o", "elsewhere"])
    assert (settings.per_class, settings.out) == (5, Path("elsewhere"))
    assert (settings.politeness.page_delay_s, settings.politeness.host_interval_s) == (1.5, 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--classes", '{"../etc": ["x"]}'], "names a folder"),
        (["--classes", '{"jeans": []}'], "at least one non-empty search query"),
        (["--classes", '{"jeans": ["q"]}', "--per-class", "0"], "per_class"),
        ([], "no classes to scrape"),
        (["--config", "/nonexistent.toml"], "config file not found"),
        ([*CLASSES, "--base-url", "www.amazon.de"], "base_url: Value error, must be an http:// or https:// URL"),
        ([*CLASSES, "--base-url", "ftp://mirror.test"], "base_url: Value error, must be an http:// or https:// URL"),
        ([*CLASSES, "--base-url", "https://"], "base_url: Value error, must be an http:// or https:// URL"),
        ([*CLASSES, "--base-url", "http://127.0.0.1:99999"], "base_url: Value error, Port out of range"),
    ],
)
def test_bad_settings_exit_2_with_a_clear_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_key_in_the_toml_is_refused(tmp_path, capsys):
    config = tmp_path / "scrape.toml"
    config.write_text('per_clas = 5\n[classes]\njeans = ["men jeans"]\n')
    assert main(["--config", str(config)]) == 2
    assert "per_clas" in capsys.readouterr().err


def test_bad_values_read_as_key_reason_value_and_source(tmp_path, capsys):
    config = tmp_path / "scrape.toml"
    config.write_text('per_class = 0\n[classes]\njeans = ["men jeans"]\n[download]\nretries = -1\n')
    assert main(["--config", str(config), "--download.timeout-s", "0"]) == 2
    err = capsys.readouterr().err
    assert f"per_class: Input should be greater than 0 (got 0) [from {config}]" in err
    assert f"download.retries: Input should be greater than or equal to 0 (got -1) [from {config}]" in err
    assert "download.timeout_s: Input should be greater than 0 (got '0') [from command line]" in err
    assert "errors.pydantic.dev" not in err and "Traceback" not in err

    config.write_text("per_class = [\n")
    assert main(["--config", str(config)]) == 2
    assert f"{config}: not valid TOML" in capsys.readouterr().err


def test_help_shows_what_to_type_not_python_types(capsys):
    with pytest.raises(SystemExit):
        load_settings(["--help"])
    text = capsys.readouterr().out
    assert "--per-class PER_CLASS" in text and "--base-url BASE_URL" in text and "--classes CLASSES" in text
    for python_type in ("{Path,null}", "dict[str,list[str]]", "[JSON]", "default factory", "(default: None)"):
        assert python_type not in text


def test_profiles_are_chosen_by_name_or_path(tmp_path):
    assert "amazon" in available_profiles()
    amazon = load_profile("amazon")
    assert amazon.search_url("men jeans") == "https://www.amazon.in/s?k=men+jeans"
    assert amazon.search_url("saree", "http://127.0.0.1:8000") == "http://127.0.0.1:8000/s?k=saree"

    own = tmp_path / "flipkart.toml"
    own.write_text(
        'name = "flipkart"\nbase_url = "https://www.flipkart.com"\nsearch_path = "/search?q={query}"\n'
        'tile = "div[data-id]"\nproduct_id_attribute = "data-id"\ntitle = "a[title]"\nlink = "a"\n'
        'image = "img"\nnext_page = "nav a:last-child"\n'
    )
    assert load_profile(str(own)).search_url("men jeans") == "https://www.flipkart.com/search?q=men+jeans"


def test_a_bad_profile_is_refused_naming_the_problem(tmp_path):
    with pytest.raises(SettingsError, match=r"unknown site profile 'ebay'.*amazon"):
        load_profile("ebay")
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nbase_url = "https://x.test"\nsearch_path = "/s"\n')
    with pytest.raises(SettingsError, match="search_path"):
        load_profile(str(broken))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [*CLASSES, "--base-url", "127.0.0.1:8000"],
            "base_url: Value error, must be an http:// or https:// URL with a host, e.g. https://www.amazon.de "
            "(got '127.0.0.1:8000') [from command line]",
        ),
        (["--classes", '{"jeans": ["men jeans"]'], '--classes: cannot be read (Missing end delimiter "}")'),
        ([*CLASSES, "--browser.extra-args", '["--lang=de"'], "--browser.extra-args: cannot be read"),
        ([*CLASSES, "--site", "ebay"], "unknown site profile 'ebay': built-in: amazon;"),
    ],
    ids=["base-url-without-scheme", "classes-broken-json", "extra-args-broken-json", "unknown-site"],
)
def test_a_mistyped_command_line_exits_2_with_one_clear_message(argv, message):
    result = _sortline_scrape(*argv)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("sortline-scrape: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_profile_lists_each_problem_as_key_reason_value(tmp_path):
    profile = tmp_path / "shop.toml"
    profile.write_text('name = "shop"\nbase_url = "shop.test"\nsearch_path = "/s"\ntile = "div"\n')
    result = _sortline_scrape(*CLASSES, "--site", str(profile))
    assert result.returncode == 2
    assert result.stderr.splitlines()[:4] == [
        f"sortline-scrape: site profile {profile} is invalid:",
        "  base_url: String should match pattern '^https?://[^/]+$' (got 'shop.test')",
        "  search_path: Value error, must start with '/' and contain {query} (got '/s')",
        "  product_id_attribute: Field required",
    ]
    assert "validation error" not in result.stderr and "errors.pydantic.dev" not in result.stderr

    profile.write_text('name = "shop\n')
    result = _sortline_scrape(*CLASSES, "--site", str(profile))
    assert result.returncode == 2
    assert result.stderr.startswith(f"sortline-scrape: site profile {profile} is not valid TOML: ")


@pytest.mark.parametrize("robots", ["--politeness.obey-robots", "--no-politeness.obey-robots"])
def test_a_shop_that_takes_no_connection_is_reported_as_such(tmp_path, robots):
    with socket.socket() as bound_not_listening:  # holds the port, so nothing else listens on it meanwhile
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        result = _sortline_scrape(
            *CLASSES, "--base-url", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "out"), robots
        )
    assert result.returncode == 1
    assert f"cannot connect to 127.0.0.1:{port} (Connection refused)" in result.stderr
    assert "robots.txt" not in result.stderr and "layout" not in result.stderr
    assert not (tmp_path / "out").exists()

"""Settings from TOML and the command line, and site profiles as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from scraper.cli import main
from scraper.config import load_settings
from scraper.errors import ScrapeError
from scraper.profile import available_profiles, load_profile

EXAMPLE = Path(__file__).resolve().parents[2] / "scraper" / "examples" / "apparel.toml"


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
    with pytest.raises(ScrapeError, match=r"unknown site profile 'ebay'.*amazon"):
        load_profile("ebay")
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nbase_url = "https://x.test"\nsearch_path = "/s"\n')
    with pytest.raises(ScrapeError, match="search_path"):
        load_profile(str(broken))

"""``sortline-scrape`` / ``python -m scraper``: the entry point, which checks the scraper extra is installed.

Exit status: 0 every class ran normally, 1 a class was stopped (CAPTCHA, layout change, robots.txt,
host down), 2 bad settings or a missing extra, 130 interrupted (rerun to resume).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from scraper.app import run  # Selenium, requests, imagehash: the scraper extra
    except ModuleNotFoundError as exc:
        print(
            f"sortline-scrape: needs the scraper extra (missing module {exc.name!r}): pip install 'sortline[scraper]'",
            file=sys.stderr,
        )
        return 2
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())

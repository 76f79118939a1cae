"""`python -m trainer` = `sortline-train`."""

from trainer.cli import main

raise SystemExit(main())

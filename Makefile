# The two commands of the README. Both set up what they need on a fresh machine.
.PHONY: demo test bench-edge lint

demo:  ## install, start a local broker if needed, run the daemon on the demo clip, print its decisions
	scripts/demo.sh

test:  ## install everything the tests need, lint, run the test suite
	scripts/test.sh

bench-edge:  ## daemon vs. interpreter-only speed on the committed int8 bundle
	scripts/bootstrap.sh test && .venv/bin/python bench/edge.py

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

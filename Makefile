# The two quick-start commands of README.md, and a few helpers.
.PHONY: demo test wheel-check setup setup-dev bench clean

demo: setup
	.venv/bin/ganforge train --config configs/dcgan-fashion-mnist.yaml

test: setup-dev
	.venv/bin/python -m pytest -q

# The built wheel in a fresh environment outside the repository: presets, train by name, sample.
wheel-check: setup
	scripts/wheel_check.sh

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh dev

bench: setup
	.venv/bin/python benchmarks/train_throughput.py

clean:
	rm -rf .venv runs .pytest_cache

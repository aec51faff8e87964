# The two commands of the README: `make demo` (the main job) and `make test` (the whole suite).
# Both create/refresh .venv first (scripts/setup.sh).
PY := .venv/bin/python
PROFILE ?= tiny

.PHONY: setup demo test figures
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m fasterseg demo --profile $(PROFILE)

test: setup
	@bash scripts/setup_browser.sh
	$(PY) -m ruff check fasterseg tests scripts
	FASTERSEG_PROFILE=tiny OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

figures: setup
	$(PY) -m fasterseg figures

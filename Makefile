# Two commands for a new machine (as root, Debian/Ubuntu):
#   make demo   set up, build the newest Go images for amd64 and arm64, run a short bench
#   make test   set up, check the rendered Dockerfiles, run the whole test suite
VENV ?= .venv
GOBUILD = $(VENV)/bin/gobuild

.PHONY: setup test unit demo lint bench-images bench-limits

setup:
	bash scripts/setup-host.sh

test: setup
	$(GOBUILD) render --check
	@$(VENV)/bin/pytest -q -p no:cacheprovider tests; rc=$$?; \
	  if [ $$rc = 5 ]; then echo "make test: pytest collected no tests: failing"; fi; exit $$rc

unit: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

demo: setup
	$(GOBUILD) base
	$(GOBUILD) images --go latest --platform linux/amd64 --platform linux/arm64
	$(GOBUILD) bench --cpus 0.5 --memory 2g --runs 3 --warmup 0 --suite compile --suite tooling --suite sched

lint: setup
	$(VENV)/bin/ruff check builder tests benchmarks

bench-images: setup
	$(VENV)/bin/python benchmarks/images.py

bench-limits: setup
	$(VENV)/bin/python benchmarks/limits.py

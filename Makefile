# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install install-dev run test bench vendor conformance

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	$(PY) manage.py serve

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install-dev
	$(PY) -m bench.run

# Real agent clients, unmodified, against a scratch gateway + simulator on loopback (conformance/*.sh;
# each installs its pinned client into a scratch folder, never into the venv). All run; any failure fails.
# A script listed here is left out of the lane as a known failure (none today; say why next to it).
CONFORMANCE_KNOWN_FAILING :=
conformance: install
	@rc=0; for s in $(filter-out $(CONFORMANCE_KNOWN_FAILING),$(wildcard conformance/[!_]*.sh)); do \
		echo "== $$s"; bash "$$s" || rc=1; done; \
	for s in $(CONFORMANCE_KNOWN_FAILING); do echo "== $$s: left out (known failure, see the Makefile)"; done; exit $$rc

# Front-end libraries of the web pages (docs/webui.md): exact versions from webui/frontend/package.json
# + package-lock.json, installed into a temporary directory, dist files copied to static/vendor/
# (committed, so `make run` works offline). Re-run after changing a pinned version.
VENDOR_FILES := marked/lib/marked.umd.js marked/LICENSE dompurify/dist/purify.min.js dompurify/LICENSE \
	livekit-client/dist/livekit-client.umd.js livekit-client/LICENSE \
	swagger-ui-dist/swagger-ui-bundle.js swagger-ui-dist/swagger-ui.css swagger-ui-dist/LICENSE \
	chart.js/dist/chart.umd.min.js chart.js/LICENSE.md
vendor:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp webui/frontend/package.json webui/frontend/package-lock.json "$$tmp"/; \
	(cd "$$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); \
	mkdir -p static/vendor; \
	for f in $(VENDOR_FILES); do \
		pkg=$${f%%/*}; name=$$(basename "$$f"); \
		case "$$name" in LICENSE*) name="$$pkg.$$name";; esac; \
		cp "$$tmp/node_modules/$$f" "static/vendor/$$name"; \
	done; \
	(cd "$$tmp/node_modules" && for p in marked dompurify livekit-client swagger-ui-dist chart.js; do node -p "'$$p ' + require('./$$p/package.json').version"; done) > static/vendor/VERSIONS; \
	echo "vendored into static/vendor:"; cat static/vendor/VERSIONS

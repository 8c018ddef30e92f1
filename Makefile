# moeserve's two commands: `make run` (set up, build, run the bundled demo model) and
# `make test` (set up, build, run every CPU test). Everything else is a building block.
PRESET ?= release
BUILD_DIR := build/$(PRESET)
JOBS ?= $(shell nproc)
DEMO_MODEL ?= models/kjv-mixtral-tiny

.PHONY: all deps configure build test test-asan test-asan-loader test-gpu run bench clean format

all: build
	@echo "built $(BUILD_DIR)/moeserve"

deps:
	@scripts/install-deps.sh

configure: deps
	@[ -f $(BUILD_DIR)/build.ninja ] || cmake --preset $(PRESET)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD_DIR) -LE gpu --output-on-failure -j $(JOBS)

test-asan:
	$(MAKE) test PRESET=asan

# The loader's corrupt-input tests under AddressSanitizer + UBSan (part of CI).
test-asan-loader: deps
	@[ -f build/asan/build.ninja ] || cmake --preset asan
	cmake --build build/asan -j $(JOBS) --target safetensors_test
	ASAN_OPTIONS=detect_leaks=1 build/asan/tests/safetensors_test

# GPU tests, run on the device machine (label `gpu`).
test-gpu: build
	ctest --test-dir $(BUILD_DIR) -L gpu --output-on-failure

run: build
	$(BUILD_DIR)/moeserve generate $(DEMO_MODEL) --prompt "The LORD is my shepherd;" --max-tokens 48 --temperature 0

bench: build
	scripts/bench-cpu.sh

clean:
	rm -rf build

format:
	clang-format -i $$(git ls-files 'src/*.h' 'src/*.cpp' 'src/*.cu' 'tests/*.cpp')

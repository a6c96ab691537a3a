# Thin wrapper around CMake: CMakeLists.txt is the one build.
BUILD ?= build
TYPE  ?= Release
JOBS  ?= $(shell nproc)
BENCH_ARGS ?=

.PHONY: all deps deps-test configure build test bench bench-compare install format clean

all: build

deps:
	@bash scripts/deps.sh

deps-test:
	@bash scripts/deps.sh test

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

test: deps-test build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

bench: build
	@$(BUILD)/bench/otter-bench $(BENCH_ARGS)

bench-compare: build
	@PEER=$(PEER) bash bench/compare.sh $(BUILD) $(BENCH_ARGS)

install: build
	@cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

format:
	@clang-format -i $$(git ls-files '*.c' '*.h' '*.cc')

clean:
	@rm -rf $(BUILD)

# anykvm: `make demo` boots a guest under unmodified QEMU on anykvm,
# `make test` installs what it needs, builds and passes every test,
# `make bench` measures anykvm against QEMU TCG.
JOBS ?= 2
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps build test test-asan demo bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	ninja -C $(BUILD) -j$(JOBS)

test: build test-asan
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# Unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DANYKVM_SANITIZE=ON >/dev/null
	ninja -C $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS) -L unit

demo: build
	scripts/demo.sh

# BENCH_ARGS passes options to bench/run.py (e.g. BENCH_ARGS="--runs 5 --no-perf");
# BUILD=dir measures the anykvm built there. Results: bench/results/results.{md,json}.
BENCH_ARGS ?=
bench: build
	scripts/fetch-debian-guest.sh $(BUILD)/guests/debian-686 || echo "bench: no Debian guest; it is skipped"
	python3 bench/run.py --build $(BUILD) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

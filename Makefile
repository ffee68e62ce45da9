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

bench: build
	python3 bench/run.py

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

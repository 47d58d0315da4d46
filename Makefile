# husk: OCI containers in lightweight VMs.  GNU make, no autotools.
#
#   make            build everything into build/
#   make test       run every test suite (unit, integration, e2e)
#   make bench      run the benchmarks (figures printed, not asserted)
#   make deps       install missing Debian packages (apt-get)
#   make SANITIZE=1 test    ASan + UBSan build (into build-san/)
#   make coverage   line coverage of our own code (gcovr)
#   make format     apply .clang-format to our C

VERSION := 0.1.0
# a root shell without the sbin directories (CI, su, sudo -E) still finds
# depmod, chroot, ip, tc and friends, for the guest build and the tests
export PATH := $(PATH):/usr/local/sbin:/usr/sbin:/sbin
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

ifeq ($(SANITIZE),1)
B ?= build-san
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Wno-format-truncation -Wno-maybe-uninitialized
else ifeq ($(COVERAGE),1)
B ?= build-cov
SAN_FLAGS := --coverage -fprofile-update=atomic -O0 -Wno-format-truncation -Wno-maybe-uninitialized
else
B ?= build
SAN_FLAGS :=
endif

CC ?= gcc
PKGS := libzmq msgpack libevent libevent_pthreads jansson libseccomp libprotobuf-c libmnl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -fPIC \
	-D_GNU_SOURCE -I. -Iinclude $(PKG_CFLAGS) \
	-DHUSK_VERSION='"$(VERSION)"' -DHUSK_COMMIT='"$(GIT_COMMIT)"' $(SAN_FLAGS)
LDFLAGS += $(SAN_FLAGS)
LDLIBS := $(PKG_LIBS) -lpthread

# The core library: every module of every layer.  Program entry points live
# in */main_*.c and are not part of it.
LIB_DIRS := common messages bus actors oci hypervisors agent resources runtimes persist services tools
LIB_SRCS := $(filter-out %/main_%.c,$(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)))
LIB_SRCS += $(if $(filter services,$(LIB_DIRS)),$(shell find services/proto -name '*.pb-c.c' 2>/dev/null | LC_ALL=C sort))
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o)
LIB := $(B)/libhusk-core.a

# The guest side (agent/guest/): its own library, linked into husk-agent and
# into the tests and helpers that exercise it on the host.
GUEST_SRCS := $(filter-out agent/guest/main_%.c,$(wildcard agent/guest/*.c))
GUEST_OBJS := $(GUEST_SRCS:%.c=$(B)/obj/%.o)
GUEST_LIB := $(B)/libhusk-guest.a
LIBS := $(GUEST_LIB) $(LIB)

# Programs: name -> entry file (the first word decides whether it exists yet).
PROG_husk-agent := agent/guest/main_agent.c
PROG_husk-trace := tools/main_trace.c
PROG_husk := services/main_husk.c
PROG_containerd-shim-husk-v2 := services/main_shim.c
PROG_NAMES := husk-agent husk-trace husk containerd-shim-husk-v2
PROGS := $(foreach p,$(PROG_NAMES),$(if $(wildcard $(firstword $(PROG_$(p)))),$(p)))
PROG_BINS := $(PROGS:%=$(B)/bin/%)
prog_objs = $(addprefix $(B)/obj/,$(patsubst %.c,%.o,$(PROG_$(1))))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(HELPER_SRCS:tests/helpers/%.c=$(B)/tests/helpers/%)
BENCH_SRCS := $(wildcard tests/bench/bench_*.c)
BENCH_BINS := $(BENCH_SRCS:tests/bench/%.c=$(B)/bench/%)

# Per-test timeout (seconds); VM tests set their own inside.
TEST_TIMEOUT ?= 300

COV_FILTERS := --filter 'common/' --filter 'messages/' --filter 'bus/' --filter 'actors/' \
	--filter 'oci/' --filter 'hypervisors/' --filter 'agent/' --filter 'resources/' \
	--filter 'runtimes/' --filter 'persist/' --filter 'services/' --filter 'tools/' \
	--exclude 'services/proto/'

.PHONY: all lib test unit e2e bench deps coverage format clean guest check
all: $(LIBS) $(PROG_BINS) $(UNIT_BINS) $(HELPER_BINS) $(BENCH_BINS) $(if $(SAN_FLAGS),,guest)

lib: $(LIB)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# the objects that print the commit are rebuilt when it changes (a stale
# commit in `husk version` and every log's first line misleads)
COMMIT_STAMP := $(B)/commit.stamp
$(shell mkdir -p $(B) && { [ "$$(cat $(COMMIT_STAMP) 2>/dev/null)" = "$(GIT_COMMIT)" ] || echo "$(GIT_COMMIT)" >$(COMMIT_STAMP); })
$(B)/obj/common/log.o $(B)/obj/services/cli_cmd.o $(B)/obj/services/main_shim.o: $(COMMIT_STAMP)

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@echo "  AR    $@"
	@rm -f $@ && ar rcs $@ $^

$(GUEST_LIB): $(GUEST_OBJS)
	@mkdir -p $(dir $@)
	@echo "  AR    $@"
	@rm -f $@ && ar rcs $@ $^

.SECONDEXPANSION:
# keep the objects of tests and programs (they are intermediate files to make)
.SECONDARY:
$(B)/bin/%: $$(call prog_objs,$$*) $(LIBS)
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/test_%: $(B)/obj/tests/unit/test_%.o $(LIBS)
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(B)/tests/helpers/%: $(B)/obj/tests/helpers/%.o $(LIBS)
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/bench/bench_%: $(B)/obj/tests/bench/bench_%.o $(LIBS)
	@mkdir -p $(dir $@)
	@echo "  LD    $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# `make test`: every suite, then one summary line.  tests/run-tests.sh runs
# each binary / script with a timeout and counts.
test: all
	@B=$(B) TEST_TIMEOUT=$(TEST_TIMEOUT) tests/run-tests.sh

# check: what CI runs: every suite, the unit suites again under ASan+UBSan,
# and the coverage floor.
# Ends with the total of both runs as the runner's summary line (CI shows
# the tail); a failure stops at the failing run's own summary.
check:
	@$(MAKE) --no-print-directory test
	@$(MAKE) --no-print-directory SANITIZE=1 unit
	@$(MAKE) --no-print-directory coverage
	@echo "== check: every suite ($$(cat $(B)/test-logs/summary)), the unit suites under ASan+UBSan ($$(cat build-san/test-logs/summary)), coverage floor met"
	@cat $(B)/test-logs/summary build-san/test-logs/summary | \
		awk '{p += $$1; f += $$3; s += $$5} END {printf "%d passed, %d failed, %d skipped\n", p, f, s}'

unit: all
	@B=$(B) TEST_TIMEOUT=$(TEST_TIMEOUT) ONLY=unit tests/run-tests.sh

bench: all
	@B=$(B) tests/run-bench.sh

deps:
	@tools/deps.sh

# coverage: line coverage of our own code (generated protobuf code excluded)
# by the unit suites and the end-to-end suites run on an instrumented build
# (the e2e suites exercise the actors, the agent and the CLI in real
# processes; VM boots are skipped there: the instrumented build has no guest
# image).  Both figures must stay above 75%: the unit-only one is printed
# first and checked last, so that a run shows both before it fails.
coverage:
	$(MAKE) COVERAGE=1 all
	rm -f $$(find build-cov/obj -name '*.gcda' 2>/dev/null)
	-B=build-cov TEST_TIMEOUT=$(TEST_TIMEOUT) ONLY=unit tests/run-tests.sh > build-cov/unit-tests.log 2>&1
	@echo "== unit suites only:"
	@gcovr -r . --object-directory build-cov/obj $(COV_FILTERS) --gcov-ignore-parse-errors \
		--print-summary --txt build-cov/unit-coverage.txt > build-cov/unit-summary.txt; \
		grep '^lines:' build-cov/unit-summary.txt
	-B=build-cov TEST_TIMEOUT=$(TEST_TIMEOUT) ONLY=e2e tests/run-tests.sh > build-cov/e2e-tests.log 2>&1
	-B=build-cov TEST_TIMEOUT=$(TEST_TIMEOUT) ONLY=fault FILTER=replay tests/run-tests.sh >> build-cov/e2e-tests.log 2>&1
	@echo "== unit and end-to-end suites:"
	gcovr -r . --object-directory build-cov/obj $(COV_FILTERS) --gcov-ignore-parse-errors \
		--print-summary --fail-under-line 75 --txt build-cov/coverage.txt
	@unit=$$(sed -n 's/^lines: \([0-9.]*\)%.*/\1/p' build-cov/unit-summary.txt); \
		echo "unit suites only: lines $${unit:-?}% (floor 75%)"; \
		awk -v u="$${unit:-0}" 'BEGIN { exit !(u >= 75) }' || \
		{ echo "coverage: the unit suites alone cover $${unit:-?}% of the lines, below the floor of 75% (build-cov/unit-coverage.txt)"; exit 1; }

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-san build-cov

# The guest kernel + initramfs from Debian packages (tools/mkguest.sh; it
# rebuilds only when an input changed).  Builds husk-agent first when its
# sources exist; otherwise mkguest.sh says the agent is missing.
guest: $(filter %/husk-agent,$(PROG_BINS))
	tools/mkguest.sh --out $(B)/guest --agent $(B)/bin/husk-agent

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

# nodeagent: the one build entry.
#   make            build everything into build/ (or build/asan with SANITIZE=1)
#   make check      install missing packages, build, run unit tests, every fuzz target
#                   briefly, and the system tests
#   make run        install missing packages, build, start the local stack
#   make stop       stop what `make run` started
#   make bench      run the benchmarks, writing docs/benchmarks.md
#   make fuzz       build and briefly run the libFuzzer targets
#   make install    install binaries, man pages, sample config and systemd unit (PREFIX, DESTDIR)
#   make deb        install missing build dependencies, build the Debian packages into build/deb

PREFIX ?= /usr/local
DESTDIR ?=
SANITIZE ?= 0
PYTHON ?= /usr/bin/python3

PKGS := rdkafka libprotobuf-c libuv sqlite3 inih jansson libmicrohttpd libcurl libcrypto libvirt \
	libxml-2.0 libisofs-1

ifeq ($(SANITIZE),1)
BUILD := build/asan
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD := build/release
SAN_FLAGS :=
endif
GEN := build/gen

# pkg-config runs lazily, so `make check` can install the packages first.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))

# Open vSwitch's configure gets the caller's own flags (dpkg-buildflags' in a package build),
# never ours below: our -Werror would fail its feature tests.
OVS_BUILD_ENV := $(foreach v,CFLAGS CPPFLAGS LDFLAGS,$(if $(value $(v)),$(v)='$(value $(v))'))

CC ?= cc
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-missing-field-initializers \
	-Wshadow -Wstrict-prototypes -Wformat=2 -fno-strict-aliasing -D_GNU_SOURCE $(SAN_FLAGS)
CPPFLAGS += -I. -I$(GEN) $(PKG_CFLAGS)
LDFLAGS += $(SAN_FLAGS)
LDLIBS += $(PKG_LIBS) -lpthread -lm -latomic

# Open vSwitch's C library (Debian ships no -dev package): built once per version of the
# openvswitch-source package by deploy/build-ovs.sh, shared by every build directory.
OVS_VERSION = $(shell dpkg-query -W -f='$${Version}' openvswitch-source 2>/dev/null)
OVS_DIR ?= build/ovs-$(OVS_VERSION)
OVS_STAMP = $(OVS_DIR)/.done
OVS_LIB = $(OVS_DIR)/obj/lib/.libs/libopenvswitch.a
OVS_CPPFLAGS = -isystem $(OVS_DIR)/obj -isystem $(OVS_DIR)/src/include \
	-isystem $(OVS_DIR)/obj/include -isystem $(OVS_DIR)/src/lib -isystem $(OVS_DIR)/obj/lib \
	-isystem $(OVS_DIR)/src

PROTO_C := $(GEN)/nodeagent.pb-c.c
PROTO_H := $(GEN)/nodeagent.pb-c.h

# Every module's sources; each module's main() lives in the tool or agent/core/main.c.  Three
# archives, linked in this order: the agent's modules, the bus contract (proto/: the table of
# operations, validation, JSON rendering, signing; nodectl and the fuzzers use it too), and
# what everything shares (common/ and the generated protobuf code).
COMMON_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard common/*.c)) $(BUILD)/gen/nodeagent.pb-c.o
CONTRACT_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard proto/*.c))
LIB_SRCS := $(filter-out agent/core/main.c,$(wildcard agent/*/*.c)) \
	$(wildcard hypervisor/*.c) $(wildcard storage/qcow2/*.c) $(wildcard net/ovs/*.c) \
	$(wildcard scheduler-client/*.c)
LIB_OBJS := $(filter-out $(BUILD)/net/ovs/%,$(LIB_SRCS:%.c=$(BUILD)/%.o)) $(BUILD)/net/ovs.o
NET_OVS_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard net/ovs/*.c))
LIB := $(BUILD)/libnodeagent.a $(BUILD)/libcontract.a $(BUILD)/libnacommon.a

NODECTL_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/nodectl/*.c))
DEVBUS_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/devbus/*.c))

BINS := $(BUILD)/nodeagent $(BUILD)/nodectl $(BUILD)/nodeagent-devbus

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:%.c=$(BUILD)/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
BENCH_BINS := $(patsubst %.c,$(BUILD)/%,$(wildcard bench/*.c))

# make run NODES=N: N test hosts joined by an underlay (deploy/hosts.py), one agent each.
NODES ?= 1

.PHONY: all bins man deps deb check check-unit check-fuzz check-system run stop bench fuzz install \
	clean format
all: $(BINS) $(UNIT_BINS)
bins: $(BINS)

deps:
	@deploy/deps.sh

# One run of protoc-c makes both (a grouped target: with -j, two runs would race).
$(PROTO_C) $(PROTO_H) &: proto/nodeagent.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Iproto proto/nodeagent.proto

$(BUILD)/gen/nodeagent.pb-c.o: $(PROTO_C)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(filter-out -Werror -Wshadow -Wstrict-prototypes,$(CFLAGS)) -c -o $@ $<

# Every object may include the generated header.
$(BUILD)/%.o: %.c $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(OVS_STAMP):
	@env -u CFLAGS -u CPPFLAGS -u LDFLAGS $(OVS_BUILD_ENV) deploy/build-ovs.sh $(OVS_DIR)

# Only net/ovs sees Open vSwitch's headers.
$(BUILD)/net/ovs/%.o: CPPFLAGS += $(OVS_CPPFLAGS)
# (An explicit rule: a recipe-less pattern rule would not add the prerequisite.)
$(NET_OVS_OBJS): | $(OVS_STAMP)

# net/ovs and the members of libopenvswitch.a it needs, as one object whose only global
# symbols are net/ovs's own: the library's json_*, hash_*, uuid_*, xmalloc... would
# otherwise take the place of jansson's and others' functions of the same names.
$(BUILD)/net/ovs.o: $(NET_OVS_OBJS) $(OVS_STAMP)
	@echo "  LD      $@"
	@ld -r -o $@.tmp $(NET_OVS_OBJS) $(OVS_LIB)
	@objcopy -w --keep-global-symbol='ovs_net_*' --keep-global-symbol='ovs_flows_*' \
		--keep-global-symbol='ovs_meters_*' $@.tmp $@
	@rm -f $@.tmp

$(BUILD)/libnodeagent.a: $(LIB_OBJS)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/libcontract.a: $(CONTRACT_OBJS)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/libnacommon.a: $(COMMON_OBJS)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/nodeagent: $(BUILD)/agent/core/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/nodectl: $(NODECTL_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/nodeagent-devbus: $(DEVBUS_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%.o: CPPFLAGS += -DNODEAGENT_SOURCE_DIR='"$(CURDIR)"'
$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)

check: deps
	@$(MAKE) --no-print-directory check-format
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check-unit
	@$(MAKE) --no-print-directory check-fuzz
	@if [ "$(SANITIZE)" != 1 ]; then $(MAKE) --no-print-directory check-system; fi

# Every C file as the checked-in .clang-format lays it out (`make format` fixes them).
check-format:
	@git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror
	@echo "format: every C file follows .clang-format"

# Every libFuzzer target, briefly (`make fuzz` runs them longer).
check-fuzz:
	@FUZZ_TIME=$${FUZZ_TIME:-5} tests/fuzz/run.sh

# test_sched_placement drives the Placement client for tests/system/test_placement_client.py:
# without a Placement it has nothing to run, so it is a system test's binary, not a unit test.
UNIT_RUN := $(filter-out %/test_sched_placement,$(UNIT_BINS))
check-unit: $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_RUN)
	@$(PYTHON) tests/layout/check_rooms.py

# The Placement client tests drive the client through a unit-test binary.
check-system: $(BINS) $(BUILD)/tests/unit/test_sched_placement
	NODEAGENT_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -v --durations=30 -p no:cacheprovider tests/system

run: deps
	@$(MAKE) --no-print-directory all
	@NODES=$(NODES) deploy/run.sh start $(abspath $(BUILD))

stop:
	@deploy/run.sh stop

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@bench/run.sh $(abspath $(BUILD))

fuzz: deps
	@tests/fuzz/run.sh

# Man pages made from each program's --help (help2man), so they say what --help says.
MANS := $(BUILD)/man/nodeagent.8 $(BUILD)/man/nodectl.8 $(BUILD)/man/nodeagent-devbus.1
man: $(MANS)

$(BUILD)/man/nodeagent.8: $(BUILD)/nodeagent
	@mkdir -p $(dir $@)
	help2man -N -s 8 -n "compute-node agent" -o $@ $<

$(BUILD)/man/nodectl.8: $(BUILD)/nodectl
	@mkdir -p $(dir $@)
	help2man -N -s 8 -n "send requests to a nodeagent and query its admin socket" \
		--version-string="$$(sed -n 's/^#define AGENT_VERSION "\(.*\)"/\1/p' agent/core/agent.h)" \
		-o $@ $<

$(BUILD)/man/nodeagent-devbus.1: $(BUILD)/nodeagent-devbus
	@mkdir -p $(dir $@)
	help2man -N -s 1 -n "embedded Kafka bus for nodeagent labs and tests" \
		--version-string="$$(sed -n 's/^#define AGENT_VERSION "\(.*\)"/\1/p' agent/core/agent.h)" \
		-o $@ $<

# The unit names the binaries by their installed path.
install: $(BINS) $(MANS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)/etc/nodeagent $(DESTDIR)/lib/systemd/system
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(BUILD)/man/nodeagent.8 $(BUILD)/man/nodectl.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 $(BUILD)/man/nodeagent-devbus.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 deploy/nodeagent.conf.sample $(DESTDIR)/etc/nodeagent/nodeagent.conf.sample
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|g' deploy/systemd/nodeagent.service \
		>$(DESTDIR)/lib/systemd/system/nodeagent.service
	chmod 0644 $(DESTDIR)/lib/systemd/system/nodeagent.service

# Debian packages nodeagent and nodeagent-devbus (debian/), built with dpkg-buildpackage from
# a copy of the tree's files in build/deb; see deploy/build-deb.sh.
deb:
	@deploy/build-deb.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

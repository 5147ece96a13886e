# nodeagent: the one build entry.
#   make            build everything into build/ (or build/asan with SANITIZE=1)
#   make check      install missing packages, build, run unit tests, every fuzz target
#                   briefly, and the system tests
#   make run        install missing packages, build, start the local stack
#   make stop       stop what `make run` started
#   make bench      run the benchmarks, writing docs/benchmarks.md
#   make fuzz       build and briefly run the libFuzzer targets
#   make install    install binaries, sample config and systemd units (PREFIX, DESTDIR)

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
OVS_DIR = build/ovs-$(OVS_VERSION)
OVS_STAMP = $(OVS_DIR)/.done
OVS_LIB = $(OVS_DIR)/obj/lib/.libs/libopenvswitch.a
OVS_CPPFLAGS = -isystem $(OVS_DIR)/obj -isystem $(OVS_DIR)/src/include \
	-isystem $(OVS_DIR)/obj/include -isystem $(OVS_DIR)/src/lib -isystem $(OVS_DIR)/obj/lib \
	-isystem $(OVS_DIR)/src

PROTO_C := $(GEN)/nodeagent.pb-c.c
PROTO_H := $(GEN)/nodeagent.pb-c.h

# Every module's sources; each module's main() lives in the tool or agent/main.c.
LIB_SRCS := $(wildcard common/*.c) $(wildcard proto/*.c) $(filter-out agent/main.c,$(wildcard agent/*.c)) \
	$(wildcard hypervisor/*.c) $(wildcard storage/qcow2/*.c) $(wildcard net/ovs/*.c) \
	$(wildcard scheduler-client/*.c)
LIB_OBJS := $(filter-out $(BUILD)/net/ovs/%,$(LIB_SRCS:%.c=$(BUILD)/%.o)) \
	$(BUILD)/gen/nodeagent.pb-c.o $(BUILD)/net/ovs.o
NET_OVS_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard net/ovs/*.c))
LIB := $(BUILD)/libnodeagent.a

NODECTL_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/nodectl/*.c))
DEVBUS_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/devbus/*.c))

BINS := $(BUILD)/nodeagent $(BUILD)/nodectl $(BUILD)/nodeagent-devbus

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:%.c=$(BUILD)/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
BENCH_BINS := $(patsubst %.c,$(BUILD)/%,$(wildcard bench/*.c))

# make run NODES=N: N test hosts joined by an underlay (deploy/hosts.py), one agent each.
NODES ?= 1

.PHONY: all deps check check-unit check-fuzz check-system run stop bench fuzz install clean format
all: $(BINS) $(UNIT_BINS)

deps:
	@deploy/deps.sh

$(PROTO_C) $(PROTO_H): proto/nodeagent.proto
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
	@deploy/build-ovs.sh $(OVS_DIR)

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
	@objcopy -w --keep-global-symbol='ovs_net_*' --keep-global-symbol='ovs_flows_*' $@.tmp $@
	@rm -f $@.tmp

$(LIB): $(LIB_OBJS)
	@rm -f $@
	@ar rcs $@ $(LIB_OBJS)

$(BUILD)/nodeagent: $(BUILD)/agent/main.o $(LIB)
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
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check-unit
	@$(MAKE) --no-print-directory check-fuzz
	@if [ "$(SANITIZE)" != 1 ]; then $(MAKE) --no-print-directory check-system; fi

# Every libFuzzer target, briefly (`make fuzz` runs them longer).
check-fuzz:
	@FUZZ_TIME=$${FUZZ_TIME:-5} tests/fuzz/run.sh

# test_sched_placement drives the Placement client for tests/system/test_placement_client.py:
# without a Placement it has nothing to run, so it is a system test's binary, not a unit test.
UNIT_RUN := $(filter-out %/test_sched_placement,$(UNIT_BINS))
check-unit: $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_RUN)

# The Placement client tests drive the client through a unit-test binary.
check-system: $(BINS) $(BUILD)/tests/unit/test_sched_placement
	NODEAGENT_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -v -p no:cacheprovider tests/system

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

install: $(BINS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/nodeagent $(DESTDIR)/lib/systemd/system
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 deploy/nodeagent.conf.sample $(DESTDIR)/etc/nodeagent/nodeagent.conf.sample
	install -m 0644 deploy/systemd/nodeagent.service $(DESTDIR)/lib/systemd/system/

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

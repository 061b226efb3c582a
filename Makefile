# orchard — build, run, test.
#
#   make run    install missing build dependencies (apt), build, start the server
#   make test   install missing test dependencies, build with ASan+UBSan, run every test
#   make bench  run the benchmarks in bench/ (release build)
#   make fuzz   run each fuzz target for FUZZ_SECONDS (clang/libFuzzer)
#   make valgrind  run the integration tests with the server under valgrind memcheck

CC       ?= gcc
PKGS     := openssl libevent libevent_openssl libevent_pthreads sqlite3 libpq jansson expat libcurl
WARN     := -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

REL_DIR  ?= build/rel
SAN_DIR  ?= build/san
REL_FLAGS := -O2 -g
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c))
SUP_SRC  := $(wildcard tests/support/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard bench/*.c)

# Debian packages the build and the server need.
BUILD_DEPS := build-essential pkg-config libssl-dev libevent-dev libsqlite3-dev libjansson-dev \
              libexpat1-dev libcurl4-openssl-dev libpq-dev
# Extra packages the tests need (postgresql: tests/pg.sh starts a throwaway
# server so the storage conformance suite also runs on PostgreSQL; nginx:
# tests/test_pg_nginx.c puts two instances behind it).
TEST_DEPS  := libcmocka-dev openssl curl scep libnghttp2-dev postgresql nginx
# Libraries only the tests and benchmarks link (the mock APNs server).
TEST_PKGS  := libnghttp2
TEST_LIBS   = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

DATA_DIR ?= ./var
FUZZ_SECONDS ?= 60

.SECONDARY:

.PHONY: all run test test-only bench bench-features fuzz valgrind valgrind-only deps test-deps clean schema-tables

all: $(REL_DIR)/orchard

deps:
	@sh tools/install-deps.sh $(BUILD_DEPS)

test-deps:
	@sh tools/install-deps.sh $(BUILD_DEPS) $(TEST_DEPS)

run: deps
	@$(MAKE) --no-print-directory $(REL_DIR)/orchard
	$(REL_DIR)/orchard serve --data-dir $(DATA_DIR)

test: test-deps
	@$(MAKE) --no-print-directory test-only

test-only: $(SAN_DIR)/orchard $(patsubst tests/%.c,$(SAN_DIR)/tests/%,$(TEST_SRC))
	@sh tests/run.sh $(SAN_DIR)

# ---- objects -------------------------------------------------------------
$(REL_DIR)/%.o: %.c $(wildcard src/*.h tests/support/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(REL_FLAGS) $(PKG_CFLAGS) -Isrc -Itests/support -c $< -o $@

$(SAN_DIR)/%.o: %.c $(wildcard src/*.h tests/support/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(SAN_FLAGS) $(PKG_CFLAGS) -Isrc -Itests/support -c $< -o $@

REL_LIB_OBJ := $(patsubst %.c,$(REL_DIR)/%.o,$(LIB_SRC))
SAN_LIB_OBJ := $(patsubst %.c,$(SAN_DIR)/%.o,$(LIB_SRC))
REL_SUP_OBJ := $(patsubst %.c,$(REL_DIR)/%.o,$(SUP_SRC))
SAN_SUP_OBJ := $(patsubst %.c,$(SAN_DIR)/%.o,$(SUP_SRC))

$(REL_DIR)/orchard: $(REL_DIR)/src/main.o $(REL_LIB_OBJ)
	$(CC) $(REL_FLAGS) -o $@ $^ $(PKG_LIBS)

$(SAN_DIR)/orchard: $(SAN_DIR)/src/main.o $(SAN_LIB_OBJ)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(PKG_LIBS)

$(SAN_DIR)/tests/%: $(SAN_DIR)/tests/%.o $(SAN_SUP_OBJ) $(SAN_LIB_OBJ)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS) -lcmocka

# ---- Apple schema tables -------------------------------------------------
# src/ddm_schema_table.c is generated from apple/device-management and checked
# in (building orchard does not need the YAML). `make schema-tables` rebuilds
# it; test_ddm_schema runs the sanitizer build of the generator to check that
# the checked-in file matches the schemas at ../shared.
APPLE_SCHEMAS ?= ../shared/apple-device-management
GEN_SCHEMA_OBJ := tools/gen_schema_tables.o tests/support/schema_check.o src/plist.o src/util.o

$(REL_DIR)/tools/gen_schema_tables: $(addprefix $(REL_DIR)/,$(GEN_SCHEMA_OBJ))
	$(CC) $(REL_FLAGS) -o $@ $^ $(PKG_LIBS)

$(SAN_DIR)/tools/gen_schema_tables: $(addprefix $(SAN_DIR)/,$(GEN_SCHEMA_OBJ))
	$(CC) $(SAN_FLAGS) -o $@ $^ $(PKG_LIBS)

$(SAN_DIR)/tests/test_ddm_schema: | $(SAN_DIR)/tools/gen_schema_tables

schema-tables: $(REL_DIR)/tools/gen_schema_tables
	$< $(APPLE_SCHEMAS) src/ddm_schema_table.c

# ---- valgrind memcheck ----------------------------------------------------
# A plain debug build (valgrind cannot run ASan binaries) of the server and of
# the integration tests; the tests start the server under valgrind through
# ORCHARD_SERVER_WRAPPER (tests/support/testserver.c). Any memcheck error or
# definite/indirect leak makes the server exit 99 on its clean stop, which
# fails the test. -q keeps valgrind's banner, which repeats the server's
# command line (secrets included), out of the server log that tests search.
# tests/valgrind.supp says why each suppression exists.
VG_DIR   := build/vg
VG_FLAGS := -O1 -g -fno-omit-frame-pointer
VG_TESTS := test_mdm test_proxy_identity
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --track-origins=no --suppressions=$(CURDIR)/tests/valgrind.supp

$(VG_DIR)/%.o: %.c $(wildcard src/*.h tests/support/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(VG_FLAGS) $(PKG_CFLAGS) -Isrc -Itests/support -c $< -o $@

VG_LIB_OBJ := $(patsubst %.c,$(VG_DIR)/%.o,$(LIB_SRC))
VG_SUP_OBJ := $(patsubst %.c,$(VG_DIR)/%.o,$(SUP_SRC))

$(VG_DIR)/orchard: $(VG_DIR)/src/main.o $(VG_LIB_OBJ)
	$(CC) $(VG_FLAGS) -o $@ $^ $(PKG_LIBS)

$(VG_DIR)/tests/%: $(VG_DIR)/tests/%.o $(VG_SUP_OBJ) $(VG_LIB_OBJ)
	$(CC) $(VG_FLAGS) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS) -lcmocka

valgrind: test-deps
	@sh tools/install-deps.sh valgrind
	@$(MAKE) --no-print-directory valgrind-only

valgrind-only: $(VG_DIR)/orchard $(patsubst %,$(VG_DIR)/tests/%,$(VG_TESTS))
	@ORCHARD_SERVER_WRAPPER="$(VALGRIND)" sh tests/run.sh $(VG_DIR) $(VG_TESTS)

# ---- benchmarks ----------------------------------------------------------
$(REL_DIR)/bench/%: $(REL_DIR)/bench/%.o $(REL_SUP_OBJ) $(REL_LIB_OBJ)
	$(CC) $(REL_FLAGS) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

bench: test-deps $(REL_DIR)/orchard $(patsubst bench/%.c,$(REL_DIR)/bench/%,$(BENCH_SRC))
	@sh bench/run.sh $(REL_DIR)

bench7: test-deps $(REL_DIR)/orchard $(patsubst bench/%.c,$(REL_DIR)/bench/%,$(BENCH_SRC)); @sh bench/run7.sh $(REL_DIR)
bench-features: test-deps $(REL_DIR)/orchard $(patsubst bench/%.c,$(REL_DIR)/bench/%,$(BENCH_SRC)); @sh bench/run_features.sh $(REL_DIR)

# ---- fuzzing (clang + libFuzzer) ------------------------------------------
fuzz:
	@sh fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf build

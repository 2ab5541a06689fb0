# parbench build. `make` builds ./bench and prints what it found.
#   CUDA ?= auto   (1: require the CUDA backend, 0: build the stub)
#   MPI  ?= auto   (1: require MPI for ddp, 0: build the stub: "built without MPI")
#   CUDA_HOME, NCCL_HOME, CUBLAS_HOME, NVCC_GENCODE are overridable, because
#   cuBLAS and NCCL sometimes live in a Python environment's nvidia packages.
#   SAN=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer, into
#   build-san/ (bench: build-san/bench), so the normal build stays as it is;
#   `make SAN=1 test` runs the tests against that bench, leak checking on.
#   `make valgrind` runs each strategy once under valgrind (normal build).
#   WERROR=1 turns warnings into errors (CI).
#   NVTX=0 builds without the NVTX headers (ranges become no-ops).

CUDA ?= auto
MPI ?= auto
SAN ?= 0
CUDA_HOME ?= /usr/local/cuda
NCCL_HOME ?= $(CUDA_HOME)
CUBLAS_HOME ?= $(CUDA_HOME)
NVCC_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90

BUILD := build
BENCH_BIN := bench
CC ?= cc
CFLAGS ?= -O3 -g
CFLAGS += -std=c11 -Wall -Wextra -pthread -MMD -MP
LDLIBS := -lm -lpthread -ldl

# CI builds with WERROR=1: the build must stay free of warnings.
ifeq ($(WERROR),1)
CFLAGS += -Werror
NVCC_WERROR := -Werror all-warnings -Xcompiler -Werror
endif

# SAN_LEAKS=0 turns LeakSanitizer off for a local run (memory errors and
# undefined behaviour are still caught); CI runs with leaks on.
SAN_LEAKS ?= 1
ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
BUILD := build-san
BENCH_BIN := $(BUILD)/bench
# The sanitizer bench never unloads a library (tests/san/keep_modules.c), so
# leaks inside Open MPI's plugins keep stacks that tests/san.supp can name.
SAN_OBJ := $(BUILD)/tests/san/keep_modules.o
# A leak or undefined behaviour fails the test that caused it; what third-
# party libraries keep by design (Open MPI's and PMIx's global state, CUDA's)
# is suppressed by tests/san.supp, which says why for each.
# fast_unwind_on_malloc=0: full stacks through libraries built without frame
# pointers, 64 deep (plugin loading inside MPI_Init is deep), so that a
# suppression sees every frame.
SAN_ENV := ASAN_OPTIONS=detect_leaks=$(SAN_LEAKS):abort_on_error=0:protect_shadow_gap=0:fast_unwind_on_malloc=0:malloc_context_size=64 \
	LSAN_OPTIONS=suppressions=$(abspath tests/san.supp):print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
endif

# --- OpenBLAS (the CPU backend always builds) -------------------------------
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null)
ifeq ($(BLAS_LIBS),)
BLAS_LIBS := -lopenblas
BLAS_FOUND := no (trying -lopenblas)
else
BLAS_FOUND := OpenBLAS $(shell pkg-config --modversion openblas)
endif
CFLAGS += $(BLAS_CFLAGS)
LDLIBS += $(BLAS_LIBS)

# --- NVTX v3 (header only; NVTX=0 builds the no-op wrappers) ----------------
NVTX ?= auto
ifneq ($(NVTX),0)
NVTX_DIR := $(firstword $(foreach d,$(CUDA_HOME)/include /usr/include /usr/local/include,$(if $(wildcard $(d)/nvtx3/nvToolsExt.h),$(d))))
endif
ifneq ($(NVTX_DIR),)
CFLAGS += -DPB_HAVE_NVTX -I$(NVTX_DIR)
NVTX_FOUND := $(NVTX_DIR)/nvtx3
else
NVTX_FOUND := no (ranges compile to no-ops)
endif

# --- CUDA --------------------------------------------------------------------
NVCC := $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
ifeq ($(CUDA),auto)
CUDA_ON := $(if $(NVCC),1,0)
else
CUDA_ON := $(CUDA)
endif
ifeq ($(CUDA_ON),1)
ifeq ($(NVCC),)
$(error CUDA=1 but nvcc was not found under CUDA_HOME=$(CUDA_HOME) or on PATH)
endif
NVCCFLAGS ?= -O3 -g
NVCCFLAGS += -std=c++17 $(NVCC_WERROR) $(NVCC_GENCODE) -Xcompiler -Wall,-Wextra -MMD -MP -I$(CUBLAS_HOME)/include -I$(NCCL_HOME)/include
CUDA_LIBDIRS := $(sort $(wildcard $(CUDA_HOME)/lib64 $(CUBLAS_HOME)/lib64 $(CUBLAS_HOME)/lib $(NCCL_HOME)/lib $(NCCL_HOME)/lib64))
LDFLAGS += $(foreach d,$(CUDA_LIBDIRS),-L$(d) -Wl,-rpath,$(d))
LDLIBS += -lcublasLt -lcublas -lnccl -lcudart -lstdc++
CUDA_SRC := $(wildcard kernels/cuda/*.cu)
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/%.o)
CUDA_FOUND := yes ($(NVCC), $(NVCC_GENCODE))
else
CUDA_SRC :=
CUDA_OBJ := $(BUILD)/kernels/cuda/backend_cuda_stub.o
CUDA_FOUND := no (stub: "built without CUDA")
endif

# --- MPI ---------------------------------------------------------------------
MPICC := $(shell command -v mpicc 2>/dev/null)
ifeq ($(MPI),auto)
MPI_ON := $(if $(MPICC),1,0)
else
MPI_ON := $(MPI)
endif
ifeq ($(MPI_ON),1)
ifeq ($(MPICC),)
$(error MPI=1 but mpicc was not found on PATH)
endif
# mpicc's own flags (Open MPI's --showme), with the project's compiler
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null)
CFLAGS += -DPB_HAVE_MPI $(MPI_CFLAGS)
LDLIBS += $(MPI_LIBS)
MPI_SRC := kernels/comm_mpi.c kernels/world_mpi.c
MPI_FOUND := $(shell mpicc --showme:version 2>&1 | head -1)
else
MPI_SRC := kernels/comm_mpi_stub.c kernels/world_stub.c
MPI_FOUND := no (stub: "built without MPI")
endif

# --- NCCL comm: needs the CUDA backend and MPI (which bootstraps NCCL) --------
ifeq ($(CUDA_ON)$(MPI_ON),11)
NCCL_SRC := kernels/cuda/comm_nccl.c
NCCL_FOUND := yes (comm nccl)
$(BUILD)/kernels/cuda/comm_nccl.o: CFLAGS += -I$(CUDA_HOME)/include -I$(CUBLAS_HOME)/include -I$(NCCL_HOME)/include
else
NCCL_SRC := kernels/comm_nccl_stub.c
NCCL_FOUND := no (stub: needs CUDA and MPI)
endif
# dp's NCCL within one process (ncclCommInitAll) needs no MPI: with the CUDA
# backend, which links NCCL
ifeq ($(CUDA_ON),1)
NCCL_SRC += kernels/cuda/nccl_local.c
$(BUILD)/kernels/cuda/nccl_local.o: CFLAGS += -I$(CUDA_HOME)/include -I$(CUBLAS_HOME)/include -I$(NCCL_HOME)/include
else
NCCL_SRC += kernels/nccl_local_stub.c
endif

# --- sources -----------------------------------------------------------------
GIT_REV := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
LIB_SRC := $(wildcard harness/*.c study/*.c strategies/*.c workloads/*.c kernels/cpu/*.c)
LIB_SRC := $(filter-out harness/main.c,$(LIB_SRC)) kernels/comm_local.c kernels/p2p.c kernels/driver_version.c kernels/gpu_check.c kernels/progress.c $(MPI_SRC) $(NCCL_SRC)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CUDA_OBJ)
MAIN_OBJ := $(BUILD)/harness/main.o

.PHONY: all summary test test-gpu bench-cpu clean
all: $(BENCH_BIN) summary

summary:
	@echo "parbench build: BLAS: $(BLAS_FOUND) | NVTX: $(NVTX_FOUND) | CUDA: $(CUDA_FOUND) | MPI: $(MPI_FOUND) | NCCL: $(NCCL_FOUND)"

$(BENCH_BIN): $(MAIN_OBJ) $(BUILD)/libparbench.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

ifeq ($(SAN),1)
$(BENCH_BIN): $(SAN_OBJ)
$(BENCH_BIN): private LDFLAGS += -Wl,--export-dynamic-symbol=dlclose
endif

$(BUILD)/libparbench.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The revision and the build's options (bench --version) are a generated
# header that changes only when they do, so a commit rebuilds env.o and
# nothing else.
$(BUILD)/git_rev.h: FORCE
	@mkdir -p $(BUILD)
	@echo '#define PB_GIT_REV "$(GIT_REV)"' > $@.tmp
	@echo '#define PB_BUILD_CUDA $(CUDA_ON)' >> $@.tmp
	@echo '#define PB_BUILD_MPI $(MPI_ON)' >> $@.tmp
	@echo '#define PB_BUILD_NCCL $(if $(filter 11,$(CUDA_ON)$(MPI_ON)),1,0)' >> $@.tmp
	@echo '#define PB_BUILD_NVTX $(if $(NVTX_DIR),1,0)' >> $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(BUILD)/harness/env.o: $(BUILD)/git_rev.h
$(BUILD)/harness/env.o: CFLAGS += -include $(BUILD)/git_rev.h
FORCE:

# sqrtf need not set errno in the optimizer loops, so AdamW vectorises
# (results unchanged: make bench-cpu-exact compares bit for bit)
$(BUILD)/kernels/cpu/backend_cpu.o: CFLAGS += -fno-math-errno

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

include tests/tests.mk
-include benchmarks/module.mk

# make valgrind: the normal build of bench, then one short run of each
# strategy (cpu backend, mlp-xs) under valgrind's memcheck with full leak
# checking: tests/valgrind/run.sh, suppressions in tests/valgrind.supp.
# Not with SAN=1: valgrind cannot run a sanitizer build.
.PHONY: valgrind
ifeq ($(SAN),1)
valgrind:
	@echo "make valgrind: not with SAN=1 (valgrind runs the normal build)" >&2; exit 2
else
valgrind: $(BENCH_BIN)
	@tests/valgrind/run.sh ./$(BENCH_BIN)
endif

clean:
	rm -rf $(BUILD) $(BENCH_BIN)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

/* The plugin registry: every backend, comm, strategy and workload this binary
 * knows, in static arrays, found by name. Adding a plugin is one line here. */
#ifndef PB_REGISTRY_H
#define PB_REGISTRY_H

#include <stdio.h>

#include "../kernels/backend.h"
#include "../kernels/comm.h"
#include "../strategies/strategy.h"
#include "../workloads/workload.h"

const pb_backend *pb_find_backend(const char *name);
const pb_comm *pb_find_comm(const char *name);
const pb_strategy *pb_find_strategy(const char *name);
const pb_workload *pb_find_workload(const char *name);
/* The model of cfg's workload and shape (its preset's ops: pb_model_describe). */
pb_status pb_model_of(const pb_config *cfg, pb_model *out);

/* The i-th strategy in the registry's order (0 first), NULL past the last:
 * for lists of the strategies with a fact of their table. */
const pb_strategy *pb_strategy_at(int i);

/* The strategy's place in the registry (0 first): the order `bench list`
 * shows the strategies and plots draw them; the number of strategies for a
 * name it does not know, so those come last. */
int pb_strategy_order(const char *name);

/* "a, b, c": the names of a kind, for "allowed: ..." messages. */
const char *pb_backend_names(void);
const char *pb_comm_names(void);
const char *pb_strategy_names(void);
const char *pb_workload_names(void);

/* `bench list`: every plugin with its description, workload shapes and the
 * devices each backend finds. */
void pb_registry_print(FILE *out);

#endif /* PB_REGISTRY_H */

#define _POSIX_C_SOURCE 200809L
#include "loader.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

/* Three slots: the step in flight reads one, the next is complete and can be
 * copied to the device during the current step, the one after is filling. */
#define SLOTS 3
#define MAX_WORKERS 64

typedef struct slot {
    char *inputs;  /* the workload's, rows of in_bytes */
    char *targets; /* rows of target_bytes */
    int64_t step; /* the step it holds, -1 while free or being filled */
    int done;     /* workers finished with the step being filled */
} slot;

struct pb_loader;

typedef struct worker {
    struct pb_loader *l;
    int index;
    pthread_t thread;
} worker;

struct pb_loader {
    const pb_backend *be;
    const pb_model *model;
    size_t in_bytes, target_bytes;
    uint64_t seed;
    int row0, batch; /* rows [row0, row0 + batch) of each global batch */
    int64_t steps;
    int64_t filled; /* samples filled, under mu */
    float *table; /* the workload's data table (docs/data.md), NULL when none */
    slot slots[SLOTS];
    int64_t released; /* slots holding steps below this may be refilled */
    bool stop;
    int n_workers, started;
    worker workers[MAX_WORKERS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Each worker fills its share of rows of every step's batch; the last to
 * finish a step publishes it. Samples are pure functions of (seed, step,
 * index), so the split changes nothing in the data. */
static void *produce(void *arg)
{
    worker *w = arg;
    pb_loader *l = w->l;
    int first = (int)((int64_t)l->batch * w->index / l->n_workers);
    int last = (int)((int64_t)l->batch * (w->index + 1) / l->n_workers);
    for (int64_t t = 0; t < l->steps; t++) {
        slot *s = &l->slots[t % SLOTS];
        pthread_mutex_lock(&l->mu);
        /* the slot last held step t - SLOTS; wait until that step is done */
        while (!l->stop && t - SLOTS >= l->released) pthread_cond_wait(&l->cv, &l->mu);
        bool stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop) break;
        l->model->ops->fill(l->model, l->seed, l->table, t, (int64_t)l->row0 + first, last - first,
                            s->inputs + (size_t)first * l->in_bytes, s->targets + (size_t)first * l->target_bytes);
        pthread_mutex_lock(&l->mu);
        l->filled += last - first;
        if (++s->done == l->n_workers) {
            s->done = 0;
            s->step = t;
            pthread_cond_broadcast(&l->cv);
        }
        pthread_mutex_unlock(&l->mu);
    }
    return NULL;
}

pb_status pb_loader_create(const pb_backend *be, const pb_model *model, uint64_t seed, int row0, int batch,
                           int64_t steps, int workers, pb_loader **out)
{
    pb_status st = PB_OK;
    pb_loader *l = NULL;
    PB_ALLOC(l, 1);
    l->be = be;
    l->model = model;
    l->in_bytes = pb_model_input_bytes(model);
    l->target_bytes = pb_model_target_bytes(model);
    l->seed = seed;
    l->row0 = row0;
    l->batch = batch;
    l->steps = steps;
    l->n_workers = workers < 1 ? 1 : workers > MAX_WORKERS ? MAX_WORKERS : workers;
    if (l->n_workers > batch) l->n_workers = batch;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (model->data_table) {
        PB_ALLOC(l->table, model->data_table);
        model->ops->data_table(model, seed, l->table);
    }
    for (int i = 0; i < SLOTS; i++) {
        l->slots[i].step = -1;
        PB_TRY(be->host_alloc(NULL, (size_t)batch * l->in_bytes, (void **)&l->slots[i].inputs));
        PB_TRY(be->host_alloc(NULL, (size_t)batch * l->target_bytes, (void **)&l->slots[i].targets));
    }
    for (int i = 0; i < l->n_workers; i++) {
        l->workers[i] = (worker){.l = l, .index = i};
        PB_REQUIRE(pthread_create(&l->workers[i].thread, NULL, produce, &l->workers[i]) == 0,
                   PB_ERR_INTERNAL, "cannot start loader thread %d", i);
        l->started++;
    }
    *out = l;
    return PB_OK;
cleanup:
    pb_loader_destroy(l);
    return st;
}

pb_status pb_loader_next(pb_loader *l, int64_t step, pb_batch *out)
{
    if (step < 0 || step >= l->steps) return pb_error(PB_ERR_INTERNAL, "loader asked for step %lld", (long long)step);
    slot *s = &l->slots[step % SLOTS];
    pthread_mutex_lock(&l->mu);
    l->released = step; /* every earlier step has finished with its slot */
    pthread_cond_broadcast(&l->cv);
    while (s->step != step) pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
    *out = (pb_batch){.step = step, .row0 = l->row0, .count = l->batch, .inputs = s->inputs, .targets = s->targets};
    return PB_OK;
}

bool pb_loader_peek(pb_loader *l, int64_t step, const void **inputs, const void **targets)
{
    if (step < 0 || step >= l->steps) return false;
    slot *s = &l->slots[step % SLOTS];
    pthread_mutex_lock(&l->mu);
    bool ready = s->step == step;
    pthread_mutex_unlock(&l->mu);
    if (ready) {
        *inputs = s->inputs;
        *targets = s->targets;
    }
    return ready;
}

int64_t pb_loader_filled(pb_loader *l)
{
    pthread_mutex_lock(&l->mu);
    int64_t n = l->filled;
    pthread_mutex_unlock(&l->mu);
    return n;
}

int pb_loader_workers_for(long cores, int local_ranks)
{
    long per = cores / (local_ranks > 1 ? local_ranks : 1);
    return per > 9 ? 8 : per > 1 ? (int)per - 1 : 1;
}

void pb_loader_destroy(pb_loader *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->started; i++) pthread_join(l->workers[i].thread, NULL);
    for (int i = 0; i < SLOTS; i++) {
        l->be->host_free(NULL, l->slots[i].inputs);
        l->be->host_free(NULL, l->slots[i].targets);
    }
    free(l->table);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

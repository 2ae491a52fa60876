/* fusecc's thread pool (threadpool.c): what a model's entry and its C API call. */
#ifndef FUSECC_THREADPOOL_H
#define FUSECC_THREADPOOL_H

#include <stdint.h>

#ifndef FUSECC_POOL_API
#define FUSECC_POOL_API __attribute__((visibility("hidden")))
#endif

/* A kernel: runs steps [begin, end) of its range on the buffers bufs. */
typedef void (*fusecc_kernel)(void **bufs, const int64_t *dims, int64_t begin, int64_t end);
/* One chunk of a split kernel. */
typedef void (*fusecc_task)(void *context, int64_t index);
/* A host's parallel-for: calls task(context, i) once for each i in [0, count), on any threads, and returns
   when all calls have returned. */
typedef void (*fusecc_host_parallel_for)(void *host, fusecc_task task, void *context, int64_t count);

/* How one run uses threads; a NULL fusecc_threading * means all defaults. */
typedef struct {
    int64_t threads;                        /* threads for this run; 0: the default */
    fusecc_host_parallel_for parallel_for;  /* the host's parallel-for, or NULL for the pool */
    void *host;                             /* passed to parallel_for */
} fusecc_threading;

/* Runs kernel(bufs, NULL, begin, end) over chunks covering [0, extent); `work` is the estimated work of one
   step (FLOPs plus bytes moved). */
FUSECC_POOL_API void fusecc_parallel_for(const fusecc_threading *threading, fusecc_kernel kernel, void **bufs,
                                         int64_t extent, int64_t work);
/* The threads a run uses by default. */
FUSECC_POOL_API int fusecc_default_threads(void);
/* Sets the default (threads < 1: back to FUSECC_NUM_THREADS, else the physical cores). */
FUSECC_POOL_API void fusecc_set_default_threads(int threads);

#endif

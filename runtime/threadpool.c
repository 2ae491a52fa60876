/* fusecc's thread pool: a model's entry splits each kernel's range [0, extent) into chunks that the
   calling thread and the pool's workers run.

   Compiled into every shared library fusecc writes (its symbols hidden there, so each library has a pool
   of its own) and, for the in-process JIT, into one helper library per process. Needs only libc and
   pthreads.

   - Threads. A run uses fusecc_threading.threads threads (0: the default). The default is
     FUSECC_NUM_THREADS when set, else the physical cores this process may run on: the CPUs of its
     affinity mask counted once per (package, core) pair, capped by the cgroup's CPU quota.
   - Chunks. A kernel whose whole work (the compiler's estimate, lower-to-loops' launch_work: FLOPs, weighted
     by how far they run from a GEMM micro-kernel's rate, plus bytes moved) is below
     twice the least work of a chunk runs on the calling thread; otherwise its range is cut into at
     most FUSECC_CHUNKS_PER_THREAD chunks per thread, none under that least work, which the threads
     take in turn from a shared counter (a slow thread takes fewer). The least work is
     DEFAULT_MIN_CHUNK_WORK (about 10-20 microseconds of one core's work: more than waking a sleeping
     worker costs), or the environment's FUSECC_MIN_CHUNK_WORK (1 splits every kernel of more than
     one step, as the test suite does).
   - Waiting. Workers spin for FUSECC_SPIN_NS after their last chunk (a model's next kernel usually
     follows within microseconds), then sleep on a condition variable: nothing spins between runs.
   - Callers. One caller at a time uses the workers; a call that finds them busy (another thread's run
     of the same or another model sharing this pool) runs its kernels on its own thread. Results never
     depend on the split.
   - fork(). The child forgets the parent's workers and starts its own on its first split.
   - Unloading. When the library is unloaded (dlclose, or the process exits), the workers are stopped
     and joined before its code goes away.
   - A host's own threads. With fusecc_threading.parallel_for set, the host runs the chunks instead:
     parallel_for(host, task, context, count) must call task(context, i) once for each i in [0, count),
     on any threads, and return when all have returned. */

#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "threadpool.h"

#define FUSECC_MAX_THREADS 256
#define DEFAULT_MIN_CHUNK_WORK (1 << 20)
#define FUSECC_CHUNKS_PER_THREAD 4
#define FUSECC_SPIN_NS 100000
#define FUSECC_WORKER_STACK (8 << 20)

struct job {
    fusecc_kernel kernel;
    void **bufs;
    int64_t extent, chunk;
    _Atomic int64_t next;     /* the next chunk to take */
    _Atomic int pending;      /* workers still on this job */
};

/* A worker's slot: the generation of the job it is given, times 4, plus the job's state for it. */
enum { ASSIGNED = 0, CLAIMED = 1, WITHDRAWN = 2 };
#define SLOT(generation, state) ((generation) << 2 | (state))

struct worker {
    pthread_t thread;
    _Atomic uint64_t slot;      /* SLOT(generation, state) of the last job given to this worker */
    uint64_t born;              /* the generation when it started: jobs before it are not its own */
    char pad[64 - sizeof(pthread_t) - 2 * sizeof(uint64_t)];
};

static struct {
    pthread_mutex_t busy;      /* held by the caller whose job the workers run */
    pthread_mutex_t lock;      /* with wake: where workers sleep */
    pthread_cond_t wake;
    _Atomic int sleepers;
    int started;               /* workers running */
    int stopping;              /* set (under busy) when the workers are to end */
    uint64_t generation;       /* jobs published so far (written under busy) */
    struct job job;
    struct worker workers[FUSECC_MAX_THREADS];
} pool = {.busy = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
static _Atomic int default_threads;
static _Atomic int64_t min_chunk_work;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void run_chunks(struct job *job) {
    for (;;) {
        int64_t begin = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed) * job->chunk;
        if (begin >= job->extent)
            return;
        int64_t end = begin + job->chunk < job->extent ? begin + job->chunk : job->extent;
        job->kernel(job->bufs, NULL, begin, end);
    }
}

/* A worker takes part in a job only after claiming it; a caller that has run every chunk itself withdraws
   the jobs still unclaimed, so it never waits for a worker that has yet to wake up. */
static void *worker_main(void *arg) {
    struct worker *self = arg;
    uint64_t seen = self->born;
    for (;;) {
        uint64_t slot = atomic_load_explicit(&self->slot, memory_order_acquire);
        if (slot >> 2 == seen) {
            int64_t until = now_ns() + FUSECC_SPIN_NS;
            for (int spins = 0; slot >> 2 == seen; spins++) {
                cpu_relax();
                slot = atomic_load_explicit(&self->slot, memory_order_acquire);
                if ((spins & 255) == 255 && now_ns() > until)
                    break;
            }
        }
        if (slot >> 2 == seen) {
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((slot = atomic_load(&self->slot)) >> 2 == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = slot >> 2;
        if (pool.stopping)
            return NULL;
        if ((slot & 3) == ASSIGNED && atomic_compare_exchange_strong(&self->slot, &slot, SLOT(seen, CLAIMED))) {
            run_chunks(&pool.job);
            atomic_fetch_sub_explicit(&pool.job.pending, 1, memory_order_release);
        }
    }
    return NULL;
}

/* In a forked child only the forking thread exists: the pool starts again from nothing. */
static void forget_workers_after_fork(void) {
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    atomic_store(&pool.sleepers, 0);
    pool.started = 0;
    pool.generation = 0;
    for (int i = 0; i < FUSECC_MAX_THREADS; i++)
        atomic_store(&pool.workers[i].slot, 0);
}

static void install_fork_handler(void) { pthread_atfork(NULL, NULL, forget_workers_after_fork); }

/* Starts workers until there are `count` (called with busy held); returns how many run. */
static int start_workers(int count) {
    pthread_once(&fork_handler_once, install_fork_handler);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, FUSECC_WORKER_STACK);
    while (pool.started < count) {
        struct worker *w = &pool.workers[pool.started];
        w->born = pool.generation;
        atomic_store(&w->slot, SLOT(pool.generation, WITHDRAWN));
        if (pthread_create(&w->thread, &attr, worker_main, w) != 0)
            break;
        pool.started++;
    }
    pthread_attr_destroy(&attr);
    return pool.started;
}

/* Ends and joins the workers before the code they run is unmapped. */
__attribute__((destructor)) static void stop_workers(void) {
    pthread_mutex_lock(&pool.busy);
    pool.stopping = 1;
    uint64_t generation = ++pool.generation;
    for (int i = 0; i < pool.started; i++)
        atomic_store(&pool.workers[i].slot, SLOT(generation, ASSIGNED));
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.started; i++)
        pthread_join(pool.workers[i].thread, NULL);
    pool.started = 0;
    pthread_mutex_unlock(&pool.busy);
}

/* A positive integer from the environment variable `name`, or 0. */
static int64_t positive_from_environment(const char *name) {
    const char *text = getenv(name);
    char *end;
    long long value = text ? strtoll(text, &end, 10) : 0;
    return text && *text && !*end && value > 0 ? value : 0;
}

static int read_int_file(const char *path, int *value) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int ok = fscanf(f, "%d", value) == 1;
    fclose(f);
    return ok;
}

/* Physical cores among the CPUs this process may run on, capped by a cgroup v2 CPU quota. */
static int physical_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    int cores = 0;
    int seen_package[CPU_SETSIZE], seen_core[CPU_SETSIZE];
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set))
            continue;
        char path[128];
        int package = 0, core = cpu;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        read_int_file(path, &package);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        read_int_file(path, &core);
        int known = 0;
        for (int i = 0; i < cores && !known; i++)
            known = seen_package[i] == package && seen_core[i] == core;
        if (!known) {
            seen_package[cores] = package;
            seen_core[cores] = core;
            cores++;
        }
    }
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        long long quota, period;
        if (fscanf(f, "%lld %lld", &quota, &period) == 2 && quota > 0 && period > 0) {
            long long allowed = (quota + period - 1) / period;
            if (allowed < cores)
                cores = (int)allowed;
        }
        fclose(f);
    }
    return cores > 0 ? cores : 1;
}

FUSECC_POOL_API int fusecc_default_threads(void) {
    int threads = atomic_load(&default_threads);
    if (threads > 0)
        return threads;
    int64_t asked = positive_from_environment("FUSECC_NUM_THREADS");
    threads = asked > 0 ? (int)(asked < FUSECC_MAX_THREADS ? asked : FUSECC_MAX_THREADS) : physical_cores();
    atomic_store(&default_threads, threads);
    return threads;
}

FUSECC_POOL_API void fusecc_set_default_threads(int threads) {
    atomic_store(&default_threads, threads < 1 ? 0 : threads < FUSECC_MAX_THREADS ? threads : FUSECC_MAX_THREADS);
}

static int64_t least_chunk_work(void) {
    int64_t work = atomic_load(&min_chunk_work);
    if (work > 0)
        return work;
    work = positive_from_environment("FUSECC_MIN_CHUNK_WORK");
    work = work > 0 ? work : DEFAULT_MIN_CHUNK_WORK;
    atomic_store(&min_chunk_work, work);
    return work;
}

struct host_task {
    fusecc_kernel kernel;
    void **bufs;
    int64_t extent, chunk;
};

static void run_host_task(void *context, int64_t index) {
    struct host_task *task = context;
    int64_t begin = index * task->chunk;
    int64_t end = begin + task->chunk < task->extent ? begin + task->chunk : task->extent;
    task->kernel(task->bufs, NULL, begin, end);
}

FUSECC_POOL_API void fusecc_parallel_for(const fusecc_threading *threading, fusecc_kernel kernel, void **bufs,
                                         int64_t extent, int64_t work) {
    int64_t threads = threading && threading->threads > 0 ? threading->threads : fusecc_default_threads();
    if (threads > FUSECC_MAX_THREADS)
        threads = FUSECC_MAX_THREADS;
    if (work < 1)
        work = 1;
    int64_t least_work = least_chunk_work();
    if (threads < 2 || extent < 2 || extent * work < 2 * least_work) {
        kernel(bufs, NULL, 0, extent);
        return;
    }
    int64_t least = (least_work + work - 1) / work;
    int64_t chunk = (extent + threads * FUSECC_CHUNKS_PER_THREAD - 1) / (threads * FUSECC_CHUNKS_PER_THREAD);
    chunk = chunk > least ? chunk : least;
    int64_t chunks = (extent + chunk - 1) / chunk;
    if (threading && threading->parallel_for) {
        struct host_task task = {kernel, bufs, extent, chunk};
        threading->parallel_for(threading->host, run_host_task, &task, chunks);
        return;
    }
    if (pthread_mutex_trylock(&pool.busy) != 0) {
        kernel(bufs, NULL, 0, extent);
        return;
    }
    if (pool.stopping) {
        pthread_mutex_unlock(&pool.busy);
        kernel(bufs, NULL, 0, extent);
        return;
    }
    int helpers = (int)((chunks < threads ? chunks : threads) - 1);
    helpers = start_workers(helpers) < helpers ? pool.started : helpers;
    struct job *job = &pool.job;
    job->kernel = kernel;
    job->bufs = bufs;
    job->extent = extent;
    job->chunk = chunk;
    atomic_store_explicit(&job->next, 0, memory_order_relaxed);
    atomic_store_explicit(&job->pending, helpers, memory_order_relaxed);
    uint64_t generation = ++pool.generation;
    for (int i = 0; i < helpers; i++)
        atomic_store(&pool.workers[i].slot, SLOT(generation, ASSIGNED));
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    run_chunks(job);
    for (int i = 0; i < helpers; i++) {
        uint64_t unclaimed = SLOT(generation, ASSIGNED);
        if (atomic_compare_exchange_strong(&pool.workers[i].slot, &unclaimed, SLOT(generation, WITHDRAWN)))
            atomic_fetch_sub_explicit(&job->pending, 1, memory_order_relaxed);
    }
    while (atomic_load_explicit(&job->pending, memory_order_acquire) > 0)
        cpu_relax();
    pthread_mutex_unlock(&pool.busy);
}

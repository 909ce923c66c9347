// Test support: a malloc/calloc/realloc/free/posix_memalign interposer with counters for tagged threads (the
// gateway's workers) and for the whole process; the real work is done by glibc's __libc_* entry points.
#define _GNU_SOURCE  // RTLD_NEXT; before any header
#include "CMallocCounter.h"

#ifndef __has_feature
#define __has_feature(x) 0
#endif

#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)

// The sanitizer runtimes interpose malloc themselves: no counting in these builds.
int malloc_counter_available(void) { return 0; }
void malloc_counter_tag_new_threads(int on) { (void)on; }
void malloc_counter_start(void) {}
void malloc_counter_stop(void) {}
malloc_counter_totals malloc_counter_read(void) { malloc_counter_totals t = {0, 0, 0, 0}; return t; }
int malloc_counter_tagged_threads(void) { return 0; }
void malloc_counter_control(int count) { (void)count; }

#else

#include <dlfcn.h>
#include <execinfo.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static atomic_int counting;
static atomic_int generation = 1;     // bumped by every start, so threads re-read their name once
static _Atomic(pthread_t) tagger;     // the thread whose pthread_create calls tag, while taggerSet is 1
static atomic_int taggerSet;
static atomic_int backtraces = -1;    // MALLOC_COUNTER_BACKTRACE=1: print each tagged malloc's stack (-1: not read yet)
static atomic_int taggedThreads;
static atomic_ullong taggedMallocs, taggedFrees, processMallocs, processFrees;

// Initial-exec TLS of the executable: reading it never allocates.
static __thread int createdTagged;    // set by the pthread_create trampoline
static __thread int nameChecked;      // generation at which this thread's name was last read
static __thread int namedWorker;
static __thread int inBacktrace;

static int isTagged(void) {
    if (createdTagged) return 1;
    int g = atomic_load_explicit(&generation, memory_order_relaxed);
    if (nameChecked != g) {
        char name[17] = {0};
        nameChecked = g;
        namedWorker = prctl(PR_GET_NAME, name, 0, 0, 0) == 0 && strncmp(name, "sluice-w", 8) == 0;
    }
    return namedWorker;
}

// Finding what allocates: with MALLOC_COUNTER_BACKTRACE=1 every counted malloc on a tagged thread prints its
// stack to stderr (backtrace_symbols_fd does not allocate; backtrace may, once, hence the guard).
static void printBacktrace(void) {
    if (inBacktrace) return;
    inBacktrace = 1;
    void *frames[24];
    int n = backtrace(frames, 24);
    static const char line[] = "--- tagged malloc\n";
    (void)!write(2, line, sizeof line - 1);
    backtrace_symbols_fd(frames, n, 2);
    inBacktrace = 0;
}

static inline void countMalloc(void) {
    if (!atomic_load_explicit(&counting, memory_order_relaxed)) return;
    atomic_fetch_add_explicit(&processMallocs, 1, memory_order_relaxed);
    if (isTagged()) {
        atomic_fetch_add_explicit(&taggedMallocs, 1, memory_order_relaxed);
        if (atomic_load_explicit(&backtraces, memory_order_relaxed) == 1) printBacktrace();
    }
}

static inline void countFree(void) {
    if (!atomic_load_explicit(&counting, memory_order_relaxed)) return;
    atomic_fetch_add_explicit(&processFrees, 1, memory_order_relaxed);
    if (isTagged()) atomic_fetch_add_explicit(&taggedFrees, 1, memory_order_relaxed);
}

void *malloc(size_t size) { countMalloc(); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { countMalloc(); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { countMalloc(); return __libc_realloc(p, size); }
void free(void *p) { if (p) countFree(); __libc_free(p); }
void *memalign(size_t alignment, size_t size) { countMalloc(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { countMalloc(); return __libc_memalign(alignment, size); }

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    countMalloc();
    void *p = __libc_memalign(alignment, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

// pthread_create is wrapped so that threads started while tagging is on carry the tag from their first instruction.
typedef int (*pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
struct trampoline { void *(*start)(void *); void *arg; };

static void *startTagged(void *raw) {
    struct trampoline t = *(struct trampoline *)raw;
    __libc_free(raw);
    createdTagged = 1;
    atomic_fetch_add_explicit(&taggedThreads, 1, memory_order_relaxed);
    return t.start(t.arg);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg) {
    static _Atomic(pthread_create_fn) real;
    pthread_create_fn next = atomic_load(&real);
    if (!next) {
        next = (pthread_create_fn)dlsym(RTLD_NEXT, "pthread_create");
        atomic_store(&real, next);
    }
    // Only the tagging thread's own pthread_create calls tag (Gateway.init spawns its workers on the caller's
    // thread), so a thread some library starts meanwhile elsewhere is not counted as a worker.
    if (!atomic_load(&taggerSet) || !pthread_equal(atomic_load(&tagger), pthread_self())) return next(thread, attr, start, arg);
    struct trampoline *t = __libc_malloc(sizeof *t);
    if (!t) return EAGAIN;
    t->start = start;
    t->arg = arg;
    int rc = next(thread, attr, startTagged, t);
    if (rc != 0) __libc_free(t);
    return rc;
}

int malloc_counter_available(void) { return 1; }
void malloc_counter_tag_new_threads(int on) {
    if (on) atomic_store(&tagger, pthread_self());
    atomic_store(&taggerSet, on);
}

void malloc_counter_start(void) {
    atomic_store(&counting, 0);
    atomic_store(&taggedMallocs, 0);
    atomic_store(&taggedFrees, 0);
    atomic_store(&processMallocs, 0);
    atomic_store(&processFrees, 0);
    atomic_fetch_add(&generation, 1);
    if (atomic_load(&backtraces) < 0) {
        const char *env = getenv("MALLOC_COUNTER_BACKTRACE");
        atomic_store(&backtraces, env && env[0] == '1');
    }
    atomic_store(&counting, 1);
}

void malloc_counter_stop(void) { atomic_store(&counting, 0); }

malloc_counter_totals malloc_counter_read(void) {
    malloc_counter_totals t;
    t.taggedMallocs = atomic_load(&taggedMallocs);
    t.taggedFrees = atomic_load(&taggedFrees);
    t.processMallocs = atomic_load(&processMallocs);
    t.processFrees = atomic_load(&processFrees);
    return t;
}

int malloc_counter_tagged_threads(void) { return atomic_load(&taggedThreads); }

void malloc_counter_control(int count) {
    for (int i = 0; i < count; i++) {
        void *volatile p = malloc(16 + (size_t)i % 64);
        free(p);
    }
}

#endif

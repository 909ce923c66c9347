// Test support: counts heap allocations made by the gateway's worker threads (the allocation test's meter).
#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H

#include <stdint.h>

/// 1 when malloc is interposed in this build; 0 under AddressSanitizer or ThreadSanitizer, whose runtimes own
/// malloc (interposing it there conflicts), so the counters stay 0 and the allocation test skips itself.
int malloc_counter_available(void);

/// While on (1), threads created by pthread_create are "tagged": their allocations count in the tagged
/// counters. Turn it on around `Gateway(...)` only, so that the gateway's worker threads, and nothing else, are tagged.
void malloc_counter_tag_new_threads(int on);

/// Zeroes every counter and starts counting. Threads named "sluice-w*" (the workers' names, once the data plane
/// names its threads) count as tagged too; a thread's name is read once after each start.
void malloc_counter_start(void);

/// Stops counting; the counters keep their values for malloc_counter_read.
void malloc_counter_stop(void);

typedef struct {
    uint64_t taggedMallocs;   // malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign on tagged threads
    uint64_t taggedFrees;     // free (of a non-null pointer) on tagged threads
    uint64_t processMallocs;  // the same over every thread of the process
    uint64_t processFrees;
} malloc_counter_totals;

malloc_counter_totals malloc_counter_read(void);

/// Number of threads tagged so far (a check that the worker threads were seen being created).
int malloc_counter_tagged_threads(void);

/// Allocates and frees `count` blocks on the calling thread through malloc (a control for the counters).
void malloc_counter_control(int count);

#endif

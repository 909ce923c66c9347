// C shims for the IO layer: epoll, eventfd, the socket flags and accept4 Glibc does not export, in plain types.
#ifndef CSLUICE_H
#define CSLUICE_H
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

// One readiness event: the 64-bit user data given at registration and the epoll event bits.
typedef struct {
    uint64_t data;
    uint32_t events;
} csluice_event;

enum {
    CSLUICE_EPOLLIN = 0x001,
    CSLUICE_EPOLLOUT = 0x004,
    CSLUICE_EPOLLERR = 0x008,
    CSLUICE_EPOLLHUP = 0x010,
    CSLUICE_EPOLLRDHUP = 0x2000,
    CSLUICE_EPOLLET = (int)(1u << 31),
};

int csluice_epoll_create(void);
int csluice_epoll_add(int epfd, int fd, uint32_t events, uint64_t data);
int csluice_epoll_mod(int epfd, int fd, uint32_t events, uint64_t data);
int csluice_epoll_del(int epfd, int fd);
// Waits up to timeout_ms; fills at most max events into out; returns the count or -1 (errno).
int csluice_epoll_wait(int epfd, csluice_event *out, int max, int timeout_ms);

int csluice_eventfd(void);
int csluice_eventfd_signal(int fd);
int csluice_eventfd_drain(int fd);

// A non-blocking, close-on-exec TCP socket for the address family; -1 on error.
int csluice_tcp_socket(int family);
// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC (Glibc does not export accept4); sets *len itself.
int csluice_accept(int fd, struct sockaddr_storage *peer, socklen_t *len);

// Monotonic clock in milliseconds.
int64_t csluice_now_ms(void);
// Resident set size in bytes (from /proc/self/statm), or -1.
long csluice_rss_bytes(void);

// Metrics cells: single-writer 64-bit counters. The owning worker adds with a relaxed load and store (no
// read-modify-write, no lock: nobody else writes the cell); a scrape reads with relaxed loads from another thread.
// Relaxed atomics compile to plain moves on x86-64 and arm64, and tell TSan the cross-thread read is intended.
static inline uint64_t csluice_cell_load(const uint64_t *cell) { return __atomic_load_n(cell, __ATOMIC_RELAXED); }
static inline void csluice_cell_store(uint64_t *cell, uint64_t value) { __atomic_store_n(cell, value, __ATOMIC_RELAXED); }
static inline void csluice_cell_add(uint64_t *cell, uint64_t delta) {
    __atomic_store_n(cell, __atomic_load_n(cell, __ATOMIC_RELAXED) + delta, __ATOMIC_RELAXED);
}

#endif

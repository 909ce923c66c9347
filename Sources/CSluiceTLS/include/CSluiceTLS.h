// C shims for the TLS layer: what Swift cannot call directly (OpenSSL macros, callbacks) and one
// place that maps OpenSSL's I/O outcomes to a small set of result words.
#ifndef CSLUICE_TLS_H
#define CSLUICE_TLS_H
#include <stddef.h>
#include <openssl/ssl.h>

// Which ALPN protocols the server offers (server preference order).
enum {
    SLUICE_TLS_ALPN_HTTP11 = 0,     // "http/1.1" only
    SLUICE_TLS_ALPN_H2_HTTP11 = 1,  // "h2", then "http/1.1"
    SLUICE_TLS_ALPN_H2 = 2,         // "h2" only (client contexts for h2:// pods)
};

// What ALPN settled on for a connection.
enum {
    SLUICE_TLS_PROTO_NONE = 0,  // the client sent no ALPN or nothing overlapped (NOACK): HTTP/1.1
    SLUICE_TLS_PROTO_HTTP11 = 1,
    SLUICE_TLS_PROTO_H2 = 2,
};

// Outcome of one handshake, read or write step.
enum {
    SLUICE_TLS_OK = 0,
    SLUICE_TLS_WANT_READ = 1,
    SLUICE_TLS_WANT_WRITE = 2,
    SLUICE_TLS_CLOSED = 3,  // the peer sent close_notify
    SLUICE_TLS_FAILED = 4,  // protocol error or socket error; the SSL object must not be used for I/O again
};

// Which file a failed context creation is about.
enum {
    SLUICE_TLS_BAD_CERT = 1,
    SLUICE_TLS_BAD_KEY = 2,
    SLUICE_TLS_BAD_PAIR = 3,  // both load, but the key does not belong to the certificate
    SLUICE_TLS_BAD_SETUP = 4, // an OpenSSL setting was refused (a bug, or an OpenSSL built without something)
};

// A server context for one certificate chain and key with all of Sluice's settings (see the .c file).
// NULL on failure: *which is one of SLUICE_TLS_BAD_*, and reason holds OpenSSL's or the OS's words.
SSL_CTX *sluice_tls_ctx_new(const char *cert_file, const char *key_file, int alpn, int *which,
                            char *reason, size_t reason_len);

// A client context for upstream (gateway → pod) connections: TLS 1.2+, the same ciphers and groups, peer
// verification always on, against the PEM file ca_file (one or more CA certificates), or the system's default
// trust store when ca_file is NULL. ALPN offers http/1.1 (SLUICE_TLS_ALPN_HTTP11) or h2 only (SLUICE_TLS_ALPN_H2).
// NULL on failure, with the reason (OpenSSL's or the OS's).
SSL_CTX *sluice_tls_client_ctx_new(const char *ca_file, int alpn, char *reason, size_t reason_len);

// A client SSL on the connected (or connecting) socket fd, in connect state. `verify_name` is what the pod's
// certificate must name: an IP literal (checked against IP subjectAltNames, no SNI: RFC 6066 §3 forbids IPs
// there) when name_is_ip, else a DNS name (checked as a host name and sent as SNI). NULL on allocation failure.
SSL *sluice_tls_client_new(SSL_CTX *ctx, int fd, const char *verify_name, int name_is_ip);

// Why certificate verification failed ("certificate has expired"…), or NULL when it did not fail.
const char *sluice_tls_verify_failure(const SSL *ssl);

// The SNI table for contexts[0..count): the first is the default. Installs the client hello callback on each.
// The table must outlive every handshake started on these contexts; free it after the last SSL is freed.
typedef struct sluice_tls_sni sluice_tls_sni;
sluice_tls_sni *sluice_tls_sni_new(SSL_CTX *const *contexts, int count);
void sluice_tls_sni_free(sluice_tls_sni *table);

// One step each; on SLUICE_TLS_FAILED, *error is OpenSSL's packed error code (0 for a socket error, then
// *sys_errno says which). The thread's error queue is left empty.
int sluice_tls_handshake(SSL *ssl, unsigned long *error, int *sys_errno);
int sluice_tls_read(SSL *ssl, void *buffer, size_t count, size_t *done, int *sys_errno);
// Watches the socket BIO's reads so that a read can tell when the socket was drained (see tls.c).
void sluice_tls_watch_socket_reads(SSL *ssl);
// 1 when OpenSSL holds no bytes and its last read(2) returned less than it asked for (EAGAIN included).
int sluice_tls_socket_drained(const SSL *ssl);
int sluice_tls_write(SSL *ssl, const void *buffer, size_t count, size_t *done, int *sys_errno);

// SLUICE_TLS_PROTO_* for a finished handshake.
int sluice_tls_selected_protocol(const SSL *ssl);

// Session ticket keys, one set per process so that every worker (and every context generation) can resume
// the others' sessions. Rotation happens by itself every SLUICE_TLS_TICKET_ROTATION_SECONDS; this forces
// one now (tests, or an operator who suspects a key leaked).
void sluice_tls_rotate_ticket_keys(void);
#define SLUICE_TLS_TICKET_ROTATION_SECONDS (12 * 60 * 60)
#define SLUICE_TLS_TICKET_KEYS 3

#endif

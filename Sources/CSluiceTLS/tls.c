// C shims for the TLS layer: server context settings (Mozilla "intermediate", OpenSSL 3.0), ALPN and SNI
// callbacks, process-wide session ticket keys, and the mapping of OpenSSL I/O results.
#include "CSluiceTLS.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

// Mozilla intermediate (guidelines 6.0) TLS 1.2 ciphers: ECDHE + AEAD only, all allowed for h2 (RFC 9113 §9.2.2).
static const char *const tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char *const tls13_suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
// Mozilla lists X25519MLKEM768 first, but it needs OpenSSL 3.5; Debian 12 ships 3.0.
static const char *const groups = "X25519:P-256:P-384";

// ALPN lists in wire format (RFC 7301 §3.1), server preference first.
static const unsigned char alpn_h2_http11[] = "\x02h2\x08http/1.1";
static const unsigned char alpn_http11[] = "\x08http/1.1";
static const unsigned char alpn_h2[] = "\x02h2";

// `what` says what we were trying to do, then OpenSSL's words for why it failed.
static void describe_errors(const char *what, char *reason, size_t reason_len) {
    // The first error is the cause ("no start line"); later ones are the callers' summaries ("PEM lib").
    unsigned long e = ERR_peek_error();
    char text[200];
    if (e != 0) {
        ERR_error_string_n(e, text, sizeof text);
    } else {
        snprintf(text, sizeof text, "unknown OpenSSL error");
    }
    snprintf(reason, reason_len, "%s%s", what, text);
    ERR_clear_error();
}

// Opening the file ourselves first gives "No such file or directory" instead of OpenSSL's "system lib".
static int readable(const char *path, char *reason, size_t reason_len) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(reason, reason_len, "%s", strerror(errno));
        return 0;
    }
    fclose(f);
    return 1;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
    (void)ssl;
    const unsigned char *server = arg;
    unsigned int server_len = server == alpn_http11 ? sizeof(alpn_http11) - 1 : sizeof(alpn_h2_http11) - 1;
    // Server preference: SSL_select_next_proto takes the first of our protocols the client also offers.
    if (SSL_select_next_proto((unsigned char **)out, outlen, server, server_len, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
        // No overlap: no ALPN in the ServerHello rather than a fatal alert (RFC 7301 §3.2 allows either); the
        // connection then speaks HTTP/1.1, which is what a client with an odd list most likely wants.
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

// MARK: Session ticket keys

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

// keys[0] is the newest: it encrypts; all of them decrypt. One set per process so that a ticket issued by
// one worker (or by a context that a certificate reload has since replaced) resumes on any other.
// The lock is taken once per ticket issued or presented — per handshake, never per request — and held only
// to copy 80 bytes, so workers do not queue on it in practice.
static pthread_mutex_t ticket_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key ticket_keys[SLUICE_TLS_TICKET_KEYS];
static int ticket_key_count = 0;
static time_t ticket_rotated_at = 0;

static time_t monotonic_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

// Caller holds ticket_lock.
static int rotate_locked(void) {
    struct ticket_key fresh;
    if (RAND_bytes(fresh.name, sizeof fresh.name) != 1 || RAND_bytes(fresh.aes, sizeof fresh.aes) != 1 ||
        RAND_bytes(fresh.hmac, sizeof fresh.hmac) != 1) {
        return 0;
    }
    memmove(&ticket_keys[1], &ticket_keys[0], sizeof(struct ticket_key) * (SLUICE_TLS_TICKET_KEYS - 1));
    ticket_keys[0] = fresh;
    if (ticket_key_count < SLUICE_TLS_TICKET_KEYS) ticket_key_count++;
    ticket_rotated_at = monotonic_seconds();
    OPENSSL_cleanse(&fresh, sizeof fresh);
    return 1;
}

void sluice_tls_rotate_ticket_keys(void) {
    pthread_mutex_lock(&ticket_lock);
    rotate_locked();
    pthread_mutex_unlock(&ticket_lock);
}

static int set_hmac_key(EVP_MAC_CTX *hctx, unsigned char *key) {
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

// RFC 5077 §4 ticket protection with our keys: AES-256-CBC + HMAC-SHA256, as OpenSSL's own default does.
// Returns (SSL_CTX_set_tlsext_ticket_key_evp_cb(3)): encrypt 1 ok, -1 error; decrypt 0 unknown key (full
// handshake), 1 ok, 2 ok but from an older key (OpenSSL then issues a fresh ticket under the newest key).
static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc) {
    (void)ssl;
    struct ticket_key key;
    int index = -1;
    pthread_mutex_lock(&ticket_lock);
    if (ticket_key_count == 0 || monotonic_seconds() - ticket_rotated_at >= SLUICE_TLS_TICKET_ROTATION_SECONDS) {
        rotate_locked();
    }
    if (enc) {
        if (ticket_key_count > 0) { key = ticket_keys[0]; index = 0; }
    } else {
        for (int i = 0; i < ticket_key_count; i++) {
            if (memcmp(ticket_keys[i].name, key_name, 16) == 0) { key = ticket_keys[i]; index = i; break; }
        }
    }
    pthread_mutex_unlock(&ticket_lock);
    int result;
    if (enc) {
        if (index < 0) return -1;
        memcpy(key_name, key.name, 16);
        if (RAND_bytes(iv, 16) != 1 || EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key.aes, iv) != 1 ||
            set_hmac_key(hctx, key.hmac) != 1) {
            result = -1;
        } else {
            result = 1;
        }
    } else if (index < 0) {
        return 0;  // an unknown or rotated-out key: a full handshake, and a new ticket
    } else if (set_hmac_key(hctx, key.hmac) != 1 || EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, key.aes, iv) != 1) {
        result = -1;
    } else {
        result = index == 0 ? 1 : 2;
    }
    OPENSSL_cleanse(&key, sizeof key);
    return result;
}

// MARK: Contexts

SSL_CTX *sluice_tls_ctx_new(const char *cert_file, const char *key_file, int alpn, int *which,
                            char *reason, size_t reason_len) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) { *which = SLUICE_TLS_BAD_SETUP; describe_errors("", reason, reason_len); return NULL; }
    int ok = 1;
    // TLS 1.2 and 1.3 only (Mozilla intermediate): 1.0 and 1.1 are deprecated by RFC 8996.
    ok &= SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    ok &= SSL_CTX_set_cipher_list(ctx, tls12_ciphers);
    ok &= SSL_CTX_set_ciphersuites(ctx, tls13_suites);
    ok &= SSL_CTX_set1_groups_list(ctx, groups);
    if (!ok) { *which = SLUICE_TLS_BAD_SETUP; describe_errors("", reason, reason_len); SSL_CTX_free(ctx); return NULL; }
    // No renegotiation (CVE-2009-3555 class, and a client-driven CPU cost); no compression (CRIME; the default in
    // 3.0, set anyway). SSL_OP_CIPHER_SERVER_PREFERENCE stays off: every listed cipher is strong, so the client
    // may pick what is fastest for it, e.g. ChaCha20 without AES hardware (Mozilla: server_preferred_order false).
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    // Non-blocking sockets: SSL_write may write part of a buffer, and a retry may come from a buffer that moved
    // (ByteBuffer compacts). RELEASE_BUFFERS frees the 16 KiB+ record buffers of idle keep-alive connections.
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    // Read ahead: without it OpenSSL reads each record with two read(2) calls (5-byte header, then the body);
    // with it one read takes whatever the socket holds. TLSSession.read already drains OpenSSL's buffer
    // (SSL_pending) before it waits for an epoll edge, so buffered bytes cannot be stranded.
    SSL_CTX_set_read_ahead(ctx, 1);
    // No 0-RTT: early data can be replayed, and `POST :predict` is not idempotent in cost.
    SSL_CTX_set_max_early_data(ctx, 0);
    // Resumption by tickets only: the server-side cache is per SSL_CTX (so lost at every reload) and locked on
    // every lookup; tickets with process-wide keys resume on any worker and any context generation.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
    // Session lifetime: one day, like Mozilla's generated nginx config; with 3 keys rotated every 12 h a ticket's
    // key stays known for at least 24 h.
    SSL_CTX_set_timeout(ctx, 24 * 60 * 60);
    // The same id context on every context, so a session made under one certificate's context still matches
    // after SNI switched contexts (SSL_set_SSL_CTX copies it).
    static const unsigned char sid_ctx[] = "sluice";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, (void *)(alpn == SLUICE_TLS_ALPN_H2_HTTP11 ? alpn_h2_http11 : alpn_http11));

    if (!readable(cert_file, reason, reason_len)) { *which = SLUICE_TLS_BAD_CERT; SSL_CTX_free(ctx); return NULL; }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        *which = SLUICE_TLS_BAD_CERT; describe_errors("not a PEM certificate chain: ", reason, reason_len); SSL_CTX_free(ctx); return NULL;
    }
    if (!readable(key_file, reason, reason_len)) { *which = SLUICE_TLS_BAD_KEY; SSL_CTX_free(ctx); return NULL; }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        // OpenSSL checks the pair while loading the key and fails here on a mismatch ("key values mismatch").
        int mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        *which = mismatch ? SLUICE_TLS_BAD_PAIR : SLUICE_TLS_BAD_KEY;
        describe_errors(mismatch ? "" : "not a PEM private key: ", reason, reason_len); SSL_CTX_free(ctx); return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *which = SLUICE_TLS_BAD_PAIR; describe_errors("", reason, reason_len); SSL_CTX_free(ctx); return NULL;
    }
    ERR_clear_error();
    return ctx;
}

// MARK: SNI

struct sluice_tls_sni {
    int count;
    SSL_CTX *contexts[];
};

// Picks the context whose certificate covers the SNI name (RFC 6066 §3), in configuration order; an absent,
// malformed or unknown name keeps the default (the first) rather than failing: a client that sends an IP
// literal or an old name still gets a certificate, and decides itself whether to trust it.
static int client_hello_cb(SSL *ssl, int *alert, void *arg) {
    (void)alert;
    const struct sluice_tls_sni *table = arg;
    const unsigned char *p;
    size_t len;
    if (table->count < 2 || !SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len)) {
        return SSL_CLIENT_HELLO_SUCCESS;
    }
    // ServerNameList: u16 length, then { u8 name_type, u16 length, name }; only host_name (0) exists.
    if (len < 5 || (((size_t)p[0] << 8) | p[1]) + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name) {
        return SSL_CLIENT_HELLO_SUCCESS;
    }
    size_t n = ((size_t)p[3] << 8) | p[4];
    if (n == 0 || n + 5 > len) return SSL_CLIENT_HELLO_SUCCESS;
    const char *name = (const char *)p + 5;
    for (int i = 0; i < table->count; i++) {
        X509 *cert = SSL_CTX_get0_certificate(table->contexts[i]);
        // X509_check_host matches the DNS SANs (the CN only when there are none), wildcards included.
        if (cert != NULL && X509_check_host(cert, name, n, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1) {
            if (i > 0) SSL_set_SSL_CTX(ssl, table->contexts[i]);
            break;
        }
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

sluice_tls_sni *sluice_tls_sni_new(SSL_CTX *const *contexts, int count) {
    struct sluice_tls_sni *table = malloc(sizeof *table + sizeof(SSL_CTX *) * (size_t)count);
    if (table == NULL) return NULL;
    table->count = count;
    for (int i = 0; i < count; i++) {
        table->contexts[i] = contexts[i];
        SSL_CTX_set_client_hello_cb(contexts[i], client_hello_cb, table);
    }
    return table;
}

void sluice_tls_sni_free(sluice_tls_sni *table) { free(table); }

// MARK: Client (upstream) contexts

SSL_CTX *sluice_tls_client_ctx_new(const char *ca_file, int alpn, char *reason, size_t reason_len) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) { describe_errors("", reason, reason_len); return NULL; }
    int ok = 1;
    ok &= SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    ok &= SSL_CTX_set_cipher_list(ctx, tls12_ciphers);
    ok &= SSL_CTX_set_ciphersuites(ctx, tls13_suites);
    ok &= SSL_CTX_set1_groups_list(ctx, groups);
    // SSL_CTX_set_alpn_protos returns 0 on success (unlike everything else here).
    if (alpn == SLUICE_TLS_ALPN_H2) {
        ok &= SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2) - 1) == 0;
    } else {
        ok &= SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof(alpn_http11) - 1) == 0;
    }
    if (!ok) { describe_errors("OpenSSL refused a setting: ", reason, reason_len); SSL_CTX_free(ctx); return NULL; }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    // Verification is never optional: a pod that cannot prove its name fails the handshake (a connect failure).
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file != NULL) {
        if (!readable(ca_file, reason, reason_len)) { SSL_CTX_free(ctx); return NULL; }
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            describe_errors("not a PEM CA certificate file: ", reason, reason_len);
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        describe_errors("cannot load the system trust store: ", reason, reason_len);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL *sluice_tls_client_new(SSL_CTX *ctx, int fd, const char *verify_name, int name_is_ip) {
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) { ERR_clear_error(); return NULL; }
    int ok = SSL_set_fd(ssl, fd) == 1;
    if (ok && verify_name != NULL) {
        if (name_is_ip) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), verify_name) == 1;
        } else {
            ok = SSL_set1_host(ssl, verify_name) == 1 && SSL_set_tlsext_host_name(ssl, verify_name) == 1;
        }
    }
    if (!ok) { ERR_clear_error(); SSL_free(ssl); return NULL; }
    SSL_set_connect_state(ssl);
    return ssl;
}

const char *sluice_tls_verify_failure(const SSL *ssl) {
    long result = SSL_get_verify_result(ssl);
    return result == X509_V_OK ? NULL : X509_verify_cert_error_string(result);
}

// MARK: I/O

// SSL_get_error(3): the thread's error queue must be empty before each call, so every failure path empties it.
static int classify(SSL *ssl, int rc, unsigned long *error, int *sys_errno) {
    int saved = errno;
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return SLUICE_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return SLUICE_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return SLUICE_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (error) *error = ERR_peek_last_error();
        *sys_errno = saved != 0 ? saved : ECONNRESET;
        ERR_clear_error();
        return SLUICE_TLS_FAILED;
    default:
        if (error) *error = ERR_peek_last_error();
        *sys_errno = EPROTO;
        ERR_clear_error();
        return SLUICE_TLS_FAILED;
    }
}

int sluice_tls_handshake(SSL *ssl, unsigned long *error, int *sys_errno) {
    *error = 0;
    errno = 0;
    int rc = SSL_do_handshake(ssl);
    if (rc == 1) return SLUICE_TLS_OK;
    return classify(ssl, rc, error, sys_errno);
}

// With edge-triggered epoll a reader must not stop while data may remain. A plain socket read that returns fewer
// bytes than asked proves the socket was empty; through OpenSSL that proof is lost, which cost one extra read(2)
// (answered EAGAIN) per request. This callback keeps it: the socket BIO remembers, in its callback argument (an
// integer, no allocation), whether its last read was short. New bytes after that raise a new epoll edge.
static long watch_socket_read(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret, size_t *processed) {
    (void)argp; (void)argi; (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        int short_read = ret <= 0 || processed == NULL || *processed < len;
        BIO_set_callback_arg(b, (char *)(intptr_t)(short_read ? 1 : 2));
    }
    return ret;
}

void sluice_tls_watch_socket_reads(SSL *ssl) {
    BIO *rbio = SSL_get_rbio(ssl);
    if (rbio != NULL) BIO_set_callback_ex(rbio, watch_socket_read);
}

int sluice_tls_socket_drained(const SSL *ssl) {
    BIO *rbio = SSL_get_rbio(ssl);
    if (rbio == NULL || BIO_get_callback_ex(rbio) != watch_socket_read) return 0;
    return BIO_get_callback_arg(rbio) == (char *)(intptr_t)1 && SSL_has_pending(ssl) == 0;
}

int sluice_tls_read(SSL *ssl, void *buffer, size_t count, size_t *done, int *sys_errno) {
    errno = 0;
    if (SSL_read_ex(ssl, buffer, count, done) == 1) return SLUICE_TLS_OK;
    *done = 0;
    return classify(ssl, 0, NULL, sys_errno);
}

int sluice_tls_write(SSL *ssl, const void *buffer, size_t count, size_t *done, int *sys_errno) {
    errno = 0;
    if (SSL_write_ex(ssl, buffer, count, done) == 1) return SLUICE_TLS_OK;
    *done = 0;
    return classify(ssl, 0, NULL, sys_errno);
}

int sluice_tls_selected_protocol(const SSL *ssl) {
    const unsigned char *data = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &data, &len);
    if (len == 2 && memcmp(data, "h2", 2) == 0) return SLUICE_TLS_PROTO_H2;
    if (len == 8 && memcmp(data, "http/1.1", 8) == 0) return SLUICE_TLS_PROTO_HTTP11;
    return SLUICE_TLS_PROTO_NONE;
}

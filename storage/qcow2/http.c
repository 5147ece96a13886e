/* What the image cache's download and the export's upload share: libcurl's handles,
 * which failures are worth another attempt, and the wait before it. */
#include "storage/qcow2/image_cache-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>

/* libcurl asks here for the socket of every connection it opens, with the address it is
 * about to connect to: after DNS, for each address it tries, and after each redirect.  An
 * address the check refuses gets no socket, so nothing is sent to it. */
curl_socket_t
qcow2_addr_gate_open_socket(void *opaque, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct qcow2_addr_gate *g = opaque;
    const char *why = "not a connection to a server";
    if (purpose == CURLSOCKTYPE_IPCXN &&
        qcow2_address_allowed(&a->addr, a->addrlen, g->allowed, g->n_allowed, &why)) {
        g->last_refused = false;
        return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    }
    const void *ip = NULL;
    if (a->family == AF_INET)
        ip = &((const struct sockaddr_in *)&a->addr)->sin_addr;
    else if (a->family == AF_INET6)
        ip = &((const struct sockaddr_in6 *)&a->addr)->sin6_addr;
    if (!ip || !inet_ntop(a->family, ip, g->refused_addr, sizeof(g->refused_addr)))
        snprintf(g->refused_addr, sizeof(g->refused_addr), "(family %d)", a->family);
    g->refused_why = why;
    g->last_refused = true;
    return CURL_SOCKET_BAD;
}

void
qcow2_sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

bool
qcow2_curl_error_is_transient(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_AGAIN:
        return true;
    default:
        return false;
    }
}

bool
qcow2_http_status_is_transient(long status)
{
    return status >= 500 || status == 408 || status == 429;
}

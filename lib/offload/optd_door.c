/* The client's side of zero-optd's doorway (optd_door.h). */
#include "offload/optd_door.h"
#include "util/alloc.h"
#include "util/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Waits for @p events on @p fd until @p deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        double left = deadline - zero_clock_now();
        int rc;
        if (left <= 0)
            return 0;
        rc = poll(&pfd, 1, (int)(left * 1e3) + 1);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

int zero_optd_door_exchange(const struct sockaddr *sa, socklen_t sa_len, const void *request, size_t request_len,
                            unsigned char *answer, size_t answer_cap, size_t *answer_len, double deadline, char *why,
                            size_t why_len)
{
    const unsigned char *out = request;
    size_t sent = 0, got = 0;
    int err = 0, rc = -1;
    socklen_t err_len = sizeof(err);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    *answer_len = 0;
    if (fd < 0) {
        snprintf(why, why_len, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, sa, sa_len) != 0) {
        if (errno != EINPROGRESS) {
            snprintf(why, why_len, "connect: %s", strerror(errno));
            goto out;
        }
        if (wait_fd(fd, POLLOUT, deadline) != 1) {
            snprintf(why, why_len, "connect: no connection in time");
            goto out;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 || err != 0) {
            snprintf(why, why_len, "connect: %s", strerror(err != 0 ? err : errno));
            goto out;
        }
    }
    while (sent < request_len) {
        ssize_t n = send(fd, out + sent, request_len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 1) {
                snprintf(why, why_len, "sending the request: no room in time");
                goto out;
            }
        } else {
            /* refused early: the server may have answered and closed before
             * reading all of it, so the answer is still read below */
            break;
        }
    }
    while (got < answer_cap) {
        zero_optd_door_answer_t ans;
        ssize_t n = recv(fd, answer + got, answer_cap - got, 0);
        if (n > 0) {
            got += (size_t)n;
            if (zero_optd_decode_door_answer(answer, got, &ans) != ZERO_OPTD_PARSE_SHORT)
                break;
        } else if (n == 0) {
            break;   /* the server closed */
        } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            if (wait_fd(fd, POLLIN, deadline) != 1) {
                snprintf(why, why_len, "no answer in time");
                goto out;
            }
        } else {
            snprintf(why, why_len, "reading the answer: %s", strerror(errno));
            goto out;
        }
    }
    *answer_len = got;
    rc = 0;
out:
    close(fd);
    return rc;
}

int zero_optd_door_ask(const struct sockaddr *sa, socklen_t sa_len, uint32_t kind,
                       const unsigned char token[ZERO_OPTD_TOKEN_BYTES], uint64_t ticket, ucp_worker_h worker,
                       double deadline, unsigned char *answer, zero_optd_door_answer_t *ans, char *why,
                       size_t why_len)
{
    zero_optd_door_request_t req;
    ucp_address_t *address = NULL;
    size_t address_len = 0, answer_len = 0, request_len;
    unsigned char *buf;
    ucs_status_t st;
    zero_optd_parse_t v;
    int rc;

    memset(ans, 0, sizeof(*ans));
    st = ucp_worker_get_address(worker, &address, &address_len);
    if (st != UCS_OK) {
        snprintf(why, why_len, "no UCX worker address: %s", ucs_status_string(st));
        return -1;
    }
    if (address_len == 0 || address_len > ZERO_OPTD_MAX_WORKER_ADDRESS) {
        snprintf(why, why_len, "this worker's UCX address has %zu bytes, over the doorway's %u", address_len,
                 ZERO_OPTD_MAX_WORKER_ADDRESS);
        ucp_worker_release_address(worker, address);
        return -1;
    }
    buf = zero_malloc(ZERO_OPTD_DOOR_REQUEST_HEAD + address_len);
    if (buf == NULL) {
        snprintf(why, why_len, "out of memory");
        ucp_worker_release_address(worker, address);
        return -1;
    }
    memset(&req, 0, sizeof(req));
    req.kind = kind;
    memcpy(req.token, token, ZERO_OPTD_TOKEN_BYTES);
    req.ticket = ticket;
    req.address_len = (uint32_t)address_len;
    req.address = address;
    request_len = zero_optd_encode_door_request(buf, &req);
    ucp_worker_release_address(worker, address);
    rc = zero_optd_door_exchange(sa, sa_len, buf, request_len, answer, ZERO_OPTD_DOOR_ANSWER_MAX, &answer_len,
                                 deadline, why, why_len);
    zero_free(buf);
    if (rc != 0)
        return -1;
    if (answer_len == 0) {
        snprintf(why, why_len, "the server closed the connection without an answer");
        return -1;
    }
    v = zero_optd_decode_door_answer(answer, answer_len, ans);
    if (v != ZERO_OPTD_PARSE_OK) {
        snprintf(why, why_len, "a malformed answer: %s", zero_optd_parse_string(v));
        return -1;
    }
    if (ans->status == 0 && ans->kind != kind) {
        snprintf(why, why_len, "an answer for another kind of connection");
        return -1;
    }
    return 0;
}

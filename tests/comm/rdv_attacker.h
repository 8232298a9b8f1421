/*
 * A hostile client population for rank 0's rendezvous port (tests only; it
 * connects to 127.0.0.1 and nowhere else). One thread keeps ATK_TOTAL
 * connections open, of four kinds:
 *
 *   idle         connects and sends nothing
 *   slow         sends a hello (with a wrong token) one byte per second
 *   garbage      sends a burst of random bytes
 *   wrong token  speaks the real protocol: a full hello and record with a
 *                random token (it expects rank 0's "token mismatch" answer)
 *
 * A connection the server closes is opened again after ATK_REOPEN_S, so the
 * flood goes on for as long as the attacker runs; connections refused because
 * nothing listens yet are retried every few milliseconds.
 */
#ifndef ZERO_TEST_RDV_ATTACKER_H
#define ZERO_TEST_RDV_ATTACKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define ATK_IDLE 200
#define ATK_SLOW 50
#define ATK_GARBAGE 50
#define ATK_WRONG_TOKEN 50
#define ATK_TOTAL (ATK_IDLE + ATK_SLOW + ATK_GARBAGE + ATK_WRONG_TOKEN)
#define ATK_REOPEN_S 0.05   /* short enough that refused slots reconnect while even a fast job forms */
#define ATK_MAX_OPENS 200000          /* connection times recorded */

typedef struct atk_conn {
    int fd;                           /* -1: closed */
    int kind;                         /* 0 idle, 1 slow, 2 garbage, 3 wrong token */
    int connecting;
    int ever_connected;
    double reopen_at, next_byte_at;
    size_t sent, msg_len;
    unsigned char msg[64 + 100];
} atk_conn_t;

typedef struct attacker {
    int port;
    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_int connected_once;        /* slots that connected at least once */
    atomic_long opened;               /* successful connects */
    atomic_long closed_by_server;     /* connections the server closed or reset */
    atomic_long refusals;             /* "token mismatch" answers read by wrong-token clients */
    double *open_times;               /* CLOCK_MONOTONIC of each successful connect (first ATK_MAX_OPENS) */
    uint64_t rng;
    atk_conn_t conns[ATK_TOTAL];
} attacker_t;

/* Starts the thread against 127.0.0.1:@p port. Returns 0 or -1. */
int attacker_start(attacker_t *a, int port);

/* Stops the thread, closes every connection and frees the connect times. */
void attacker_stop(attacker_t *a);

/* Successful connects with a time in [@p from, @p to] (CLOCK_MONOTONIC seconds); before attacker_stop. */
long attacker_opened_between(const attacker_t *a, double from, double to);

#endif /* ZERO_TEST_RDV_ATTACKER_H */

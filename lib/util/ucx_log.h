/*
 * A bound on UCX's own log lines, for a process that faces peers it does
 * not trust (zero-optd).
 *
 * Why: UCX 1.13 logs one line for each of several things any process that
 * reaches a UCX port can make happen at will, before any job token is read:
 * a connection to a tcp interface's listener reset before UCX accepted it
 * ("connection establishment ... was unsuccessful", uct/tcp/tcp_cm.c:797), a
 * connection request whose peer left before the answer ("tcp_ep ...:
 * UNKNOWN", tcp_cm.c:140). Five processes connecting and resetting for 3 s
 * wrote 30,000-65,000 such lines to zero-optd's stderr (docs/optd.md,
 * Safety, "UCX's own tcp listeners"): a disk filled by anyone on the
 * network. zero-optd bounds its own refusals' lines the same way
 * (optd_server.h, the refusal log).
 *
 * The handler goes in front of UCX's own printer (ucs_log_push_handler,
 * UCX's developer API, installed with libucx-dev): per UCX source line
 * (file and line), the first ZERO_UCX_LOG_FIRST messages of error, warning,
 * diagnostic or information level in each ZERO_UCX_LOG_WINDOW_S window are
 * printed by UCX as before; the rest are counted, and one WARN of this
 * library gives their number, the source line and the last one's text
 * when the next message of that line comes after the window, or at
 * zero_ucx_log_limit_flush. Fatal messages (UCX's assertions) and debug
 * levels (someone asked for them) always pass. UCX filters by
 * UCX_LOG_LEVEL before the handler sees anything.
 *
 * Process-wide by nature (UCX has one log): a tool installs it in main();
 * the library never does on its own.
 */
#ifndef ZERO_UTIL_UCX_LOG_H
#define ZERO_UTIL_UCX_LOG_H

#define ZERO_UCX_LOG_FIRST 5          /* messages of one UCX source line printed per window */
#define ZERO_UCX_LOG_WINDOW_S 5.0     /* the window, seconds */
#define ZERO_UCX_LOG_SOURCES 32       /* source lines counted apart; the rest share one count */

/* Installs the handler, once per process (later calls do nothing). Any
 * thread; UCX may call the handler from any of its threads. */
void zero_ucx_log_limit_install(void);
/* Logs the counts not logged yet (one WARN per source line) and starts
 * new windows: at shutdown, after the last UCX call. Any thread. */
void zero_ucx_log_limit_flush(void);

#endif /* ZERO_UTIL_UCX_LOG_H */

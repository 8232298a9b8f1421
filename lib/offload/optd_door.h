/*
 * The client's side of zero-optd's doorway (docs/optd.md, "The doorway";
 * the bytes in optd_wire.h): one TCP connection per UCX connection asked
 * for, one request, one answer, closed. The remote store (store_remote.c)
 * asks through zero_optd_door_ask; tests send bytes of their own through
 * zero_optd_door_exchange. The server's side is in optd_server.c.
 */
#ifndef ZERO_OFFLOAD_OPTD_DOOR_H
#define ZERO_OFFLOAD_OPTD_DOOR_H

#include "offload/optd_wire.h"

#include <stddef.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>

/*
 * Connects to @p sa (nonblocking connect, then poll), sends the @p request_len
 * bytes of @p request, and reads what comes back into @p answer (room for
 * @p answer_cap bytes) until it is a whole doorway answer or not one
 * (zero_optd_decode_door_answer says other than SHORT), the server closes,
 * or the room is full; then closes the socket. Everything by the absolute
 * time @p deadline (zero_clock_now's clock).
 * Returns 0 with *@p answer_len bytes read (perhaps 0: the server closed
 * without an answer), or -1 with the cause in @p why (no connection, a
 * reset, the deadline).
 */
int zero_optd_door_exchange(const struct sockaddr *sa, socklen_t sa_len, const void *request, size_t request_len,
                            unsigned char *answer, size_t answer_cap, size_t *answer_len, double deadline, char *why,
                            size_t why_len);

/*
 * Asks the doorway at @p sa for a connection of @p kind (ZERO_OPTD_DOOR_*)
 * with the job @p token and (data) @p ticket, offering @p worker's UCX
 * address (ucp_worker_get_address). @p answer (ZERO_OPTD_DOOR_ANSWER_MAX
 * bytes) holds the answer, decoded into *@p ans (its address or text point
 * into @p answer).
 * Returns 0 when an answer came: accepted (ans->status 0: ans->conn_key and
 * ans->address, for ucp_ep_create's UCP_EP_PARAM_FIELD_REMOTE_ADDRESS) or
 * refused (ans->status and ans->text, the server's reason); -1 when none
 * did, with the cause in @p why.
 */
int zero_optd_door_ask(const struct sockaddr *sa, socklen_t sa_len, uint32_t kind,
                       const unsigned char token[ZERO_OPTD_TOKEN_BYTES], uint64_t ticket, ucp_worker_h worker,
                       double deadline, unsigned char *answer, zero_optd_door_answer_t *ans, char *why,
                       size_t why_len);

#endif /* ZERO_OFFLOAD_OPTD_DOOR_H */

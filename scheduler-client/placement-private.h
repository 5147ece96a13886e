/* What scheduler-client reads in Placement's answers, as pure functions of the answer's
 * status and body (scheduler-client/placement_answer.c).  placement.c sends the requests
 * and calls these; the fuzzer calls them on any bytes.  A body is NUL-terminated (size
 * bytes precede the NUL) and may hold anything: a proxy's HTML, a truncated document, a
 * hostile server's JSON.  Nothing here does I/O or keeps state. */
#ifndef NODEAGENT_SCHEDULER_PLACEMENT_PRIVATE_H
#define NODEAGENT_SCHEDULER_PLACEMENT_PRIVATE_H

#include <jansson.h>

#include "scheduler-client/scheduler.h"

/* Placement's error code of a failed answer ("placement.concurrent_update") into buf, or
 * ""; returns buf. */
const char *placement_error_code(const char *body, size_t size, char *buf, size_t buf_size);

/* Whether an answer is Placement's own 404 (a JSON body with an "errors" list): an HTML 404
 * is a wrong endpoint, and taking it for "already deleted" would hide that. */
bool placement_is_not_found(long status, const char *body, size_t size);

/* What a failed answer's body says, for an error message: "title: detail (code)", or an
 * excerpt of a body that is not Placement's, or "empty body"; one line, at most out_size. */
void placement_error_text(const char *body, size_t size, char *out, size_t out_size);

/* A non-negative integer member of a JSON answer ("generation"). */
int placement_answer_u64(const json_t *answer, const char *key, uint64_t *out);

/* The allocations of GET /resource_providers/{uuid}/allocations, in a new array the caller
 * frees (consumers that are not uuids are skipped; absent or bad amounts count 0).  < 0
 * with *why when the answer has no "allocations" object. */
int placement_parse_provider_allocations(const json_t *answer, struct sched_allocation **out,
                                         size_t *n, const char **why);

#endif

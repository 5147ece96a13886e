/* libFuzzer target: Placement's answers as scheduler-client reads them
 * (scheduler-client/placement_answer.c): error bodies (code, not-found, the text put into
 * error messages), generations, and a provider's allocations.  Placement sits behind HTTP
 * that a proxy, a wrong endpoint or a hostile server can answer.  The first input byte
 * picks the status (404 or another); the rest is the body.  Checks: the error text is one
 * NUL-terminated line without control characters; the error code fits its buffer; every
 * allocation parsed has a valid uuid, and there are no more of them than consumers.
 *
 * fuzz-sources: scheduler-client/placement_answer.c
 * fuzz-pkgs: jansson
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler-client/placement-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_line(const char *s, size_t buf_size)
{
    size_t len = strnlen(s, buf_size);
    if (len >= buf_size)
        __builtin_trap();
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    long status = (data[0] & 1) ? 404 : 409;
    size_t body_size = size - 1;
    char *body = malloc(body_size + 1);
    memcpy(body, data + 1, body_size);
    body[body_size] = '\0';

    char code[64];
    placement_error_code(body, body_size, code, sizeof(code));
    if (strnlen(code, sizeof(code)) >= sizeof(code))
        __builtin_trap();
    bool not_found = placement_is_not_found(status, body, body_size);
    if (not_found && status != 404)
        __builtin_trap();
    char small[40], said[1024];
    placement_error_text(body, body_size, small, sizeof(small));
    check_line(small, sizeof(small));
    placement_error_text(body, body_size, said, sizeof(said));
    check_line(said, sizeof(said));

    json_t *answer = json_loadb(body, body_size, 0, NULL);
    uint64_t gen;
    placement_answer_u64(answer, "generation", &gen);
    struct sched_allocation *list = NULL;
    size_t n = 0;
    const char *why = NULL;
    int ret = placement_parse_provider_allocations(answer, &list, &n, &why);
    if (ret < 0 && (!why || list || n))
        __builtin_trap();
    if (ret == 0) {
        if (n > json_object_size(json_object_get(answer, "allocations")))
            __builtin_trap();
        for (size_t i = 0; i < n; i++)
            if (!na_uuid_is_valid(list[i].consumer_uuid))
                __builtin_trap();
    }
    free(list);
    json_decref(answer);
    free(body);
    return 0;
}

/* libFuzzer target: bytes from the bus, decoded as an Envelope and validated, as the agent's
 * consumer does before recording a request.  Finds crashes, leaks and undefined behaviour in
 * protobuf-c's unpacking and in proto/validate.c; the error message is also walked so that
 * a bad echo or path would show up under ASan.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/requests.h"
#include "proto/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Nodeagent__V1__Envelope *env = nodeagent__v1__envelope__unpack(NULL, size, data);
    if (!env)
        return 0;
    struct na_error *err = NULL;
    int ret = agent_validate_envelope(env, &err);
    if ((ret < 0) != (err != NULL))
        __builtin_trap();
    if (err) {
        if (!err->field || !err->msg || strncmp(err->msg, err->field, strlen(err->field)))
            __builtin_trap();
        /* Echoed values are escaped: the message is printable ASCII. */
        for (const char *p = err->msg; *p; p++)
            if (*p < 0x20 || *p > 0x7e)
                __builtin_trap();
    } else {
        /* Whatever passes can be named and keyed by the dispatcher. */
        (void)agent_request_kind_name(agent_request_kind_of(env));
        (void)agent_request_key(env);
    }
    na_error_free(err);
    nodeagent__v1__envelope__free_unpacked(env, NULL);
    return 0;
}

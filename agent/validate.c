/* Interim: request_id and body only; the full field validation lands with the
 * validation branch. */
#include "agent/validate.h"

#include <string.h>

int
agent_validate_envelope(const Nodeagent__V1__Envelope *env, struct na_error **err)
{
    size_t len = env->request_id ? strlen(env->request_id) : 0;
    if (len == 0 || len > 64 ||
        strspn(env->request_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789._:-") != len)
        return na_error_field(err, "request_id", "request_id must be 1..64 of [A-Za-z0-9._:-]");
    if (env->body_case == NODEAGENT__V1__ENVELOPE__BODY__NOT_SET)
        return na_error_field(err, "body", "no request in envelope (missing or unknown body)");
    return 0;
}

/* Announcement: the checks of one NodeAnnouncement.  See announcement.h. */
#include "agent/outputs/announcement.h"
#include "agent/admin/metrics.h"
#include "proto/validate.h"

#include <string.h>

int
agent_announcement_check(const Nodeagent__V1__NodeAnnouncement *an, const void *key, size_t key_len,
                         struct na_error **err)
{
    int ret = agent_validate_announcement(an, err);
    if (ret < 0)
        return ret;
    if (key_len != strlen(an->node_id) || memcmp(key, an->node_id, key_len) != 0)
        return na_error_field(err, "key",
                              "key: the message's key is not its node_id `%s`; announcements "
                              "are keyed by the announcing node",
                              an->node_id);
    return 0;
}

int
agent_announcement_matches_cert(const Nodeagent__V1__NodeAnnouncement *an,
                                const struct trust_node_cert *cert, struct na_error **err)
{
    if (strcmp(an->node_id, cert->node_id) != 0) {
        na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                     "it claims node `%s` but is signed with the certificate of `%s`", an->node_id,
                     cert->node_id);
        return AGENT_ANNOUNCE_REFUSED_IDENTITY;
    }
    if (*an->tunnel_endpoint && !trust_cert_allows_endpoint(cert, an->tunnel_endpoint)) {
        na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                     "its tunnel endpoint %s is not one that the certificate of `%s` allows",
                     an->tunnel_endpoint, cert->node_id);
        return AGENT_ANNOUNCE_REFUSED_ENDPOINT;
    }
    return -1;
}

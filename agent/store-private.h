/* The state store's database handle, for the store's own files (store_*.c) that keep
 * their tables' statements beside their API.  Nothing outside the store includes this. */
#ifndef NODEAGENT_AGENT_STORE_PRIVATE_H
#define NODEAGENT_AGENT_STORE_PRIVATE_H

#include "agent/store.h"

#include <sqlite3.h>

sqlite3 *agent_store_db(struct agent_store *store);
/* Sets err from the database's last error: "state store `path`: what: message". */
int agent_store_db_error(struct agent_store *store, struct na_error **err, const char *what);

#endif

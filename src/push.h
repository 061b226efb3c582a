/* Waking devices. The APNs HTTP/2 provider plugs in behind this interface;
 * until a push certificate is configured every push reports that clearly
 * instead of silently doing nothing. */
#ifndef ORCHARD_PUSH_H
#define ORCHARD_PUSH_H

#include <stddef.h>

#include "store.h"

typedef struct pusher pusher_t;

pusher_t *pusher_new(void);
void pusher_free(pusher_t *p);

/* Sends the MDM wake-up to one enrollment. 0 on success (apns_id filled when
 * given), -1 with a reason in err (no push token, not configured, ...). */
int pusher_push(pusher_t *p, const enrollment_t *e, char *apns_id, size_t apns_id_len, char *err,
                size_t errlen);

#endif

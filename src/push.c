/* Push placeholder until the APNs provider lands: reports, per device, why
 * no wake-up was sent, so the admin API never claims a push it did not make. */
#include "push.h"

#include <stdio.h>
#include <stdlib.h>

struct pusher {
    int configured; /* no APNs provider yet: always 0 */
};

pusher_t *pusher_new(void)
{
    return calloc(1, sizeof(pusher_t));
}

void pusher_free(pusher_t *p)
{
    free(p);
}

int pusher_push(pusher_t *p, const enrollment_t *e, char *apns_id, size_t apns_id_len, char *err, size_t errlen)
{
    if (apns_id && apns_id_len)
        apns_id[0] = '\0';
    if (!e->push_token || !e->push_magic) {
        snprintf(err, errlen, "no push token: the device has not sent TokenUpdate");
        return -1;
    }
    if (!p || !p->configured) {
        snprintf(err, errlen, "APNs push is not configured (no push certificate); the command waits "
                              "until the device polls");
        return -1;
    }
    return -1;
}

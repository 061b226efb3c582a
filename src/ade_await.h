/* Await configuration (ADE profiles with await_device_configured): a
 * device in Setup Assistant reports AwaitingConfiguration in its
 * TokenUpdate and waits; orchard then runs the admin's setup commands and
 * sends DeviceConfigured, which lets Setup Assistant go on.
 *
 *   TokenUpdate (device channel) AwaitingConfiguration true, flag not yet
 *       set: each setup command is queued as its own command with CommandUUID
 *       "orchard-setup-<UUID>", in the admin's order, then the flag is set
 *       (all or nothing: a storage failure cancels what was queued and the
 *       device gets 503 and retries). A repeated TokenUpdate while the flag
 *       is set queues nothing more. AwaitingConfiguration false clears it.
 *   /mdm/connect, device channel, nothing left to hand out (no pending
 *       command, NotNow ones included) while the flag is set: DeviceConfigured
 *       ("orchard-deviceconfigured-<UUID>") is queued and handed out in the
 *       same exchange.
 *   Its result: Acknowledged (or Error: the device is not waiting, so asking
 *       again would loop) clears the flag. NotNow keeps it pending.
 *   Authenticate clears the flag (ade_on_authenticate): re-enrollment
 *       starts over.
 *
 * A device whose flag is not set is never sent DeviceConfigured by orchard.
 */
#ifndef ORCHARD_ADE_AWAIT_H
#define ORCHARD_ADE_AWAIT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "plist.h"
#include "push.h"
#include "store.h"

#define ADE_SETUP_SETTING "ade.setup_commands"
#define ADE_SETUP_UUID_PREFIX "orchard-setup-"
#define ADE_CONFIGURED_UUID_PREFIX "orchard-deviceconfigured-"
#define ADE_SETUP_MAX 100 /* setup commands */

/* The stored form of the setup commands (ADE_SETUP_SETTING): a JSON array
 * of strings, each the XML plist of one command's Command dictionary (no
 * CommandUUID: each device gets fresh ones).
 *
 * ade_setup_normalize turns what an admin PUTs into that form: a JSON
 * array (1..ADE_SETUP_MAX) whose elements are either a string holding a
 * whole command plist (as for /v1/enqueue; its CommandUUID is ignored) or
 * a JSON object that is the Command dictionary itself ({"RequestType":
 * ..., ...}; strings, numbers, booleans, arrays and objects map to their
 * plist types; data and dates need the plist string form). DeviceConfigured
 * is refused: orchard sends it after the setup commands. *out (heap,
 * JSON text) and *count on success; -1 with a reason. */
int ade_setup_normalize(const json_t *in, char **out, size_t *count, char *why, size_t whylen);

/* The stored commands as the API shows them: [{"request_type", "command"}]
 * (command = the Command dictionary as JSON). NULL on bad stored data. */
json_t *ade_setup_describe(const unsigned char *stored, size_t len);

/* TokenUpdate hook (device channel, after the store accepted it). root is
 * the message. 0, or an HTTP status (503) with the reason. */
int ade_await_on_token_update(store_t *s, pusher_t *pusher, const char *device_id, const plist_t *root,
                              char *why, size_t whylen);

/* /mdm/connect hook (device channel, after command_exchange): awaiting =
 * the device enrollment's awaiting_configuration as read before the
 * exchange (so the empty-queue poll costs no extra query); reported_uuid
 * / status of the applied report (NULL when Idle or not applied); *rc and
 * *next as command_exchange left them, updated when DeviceConfigured is
 * handed out now. Failures are logged; the device asks again next time. */
void ade_await_after_exchange(store_t *s, const char *device_id, int awaiting, const char *reported_uuid,
                              const char *status, int64_t now, int *rc, command_t *next);

#endif

/* Command protocol: PUT /mdm/connect (and /mdm without a MessageType).
 *
 * The device reports Idle or the result of one command; orchard records the
 * result and answers with the next pending command, or a zero-byte 200 when
 * there is none. The store does both in one durable transaction, so a
 * result is on disk before the device hears back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ade_await.h"
#include "app.h"
#include "ddm.h"
#include "log.h"
#include "mdm_auth.h"
#include "mdm_message.h"
#include "plist_json.h"
#include "util.h"
#include "watch.h"

/* last_seen_at is refreshed at most this often, keeping a write off the
 * Idle path for devices that poll repeatedly. */
#define LAST_SEEN_GRANULARITY 60

static const char *const result_statuses[] = {"Acknowledged", "Error", "CommandFormatError", "NotNow"};

static int known_result_status(const char *s)
{
    for (size_t i = 0; i < sizeof result_statuses / sizeof result_statuses[0]; i++)
        if (strcmp(s, result_statuses[i]) == 0)
            return 1;
    return 0;
}

/* A DeviceInformation answer carrying QueryResponses.IsSupervised tells
 * whether the device is supervised; keep it (some settings need it). */
static void record_supervision(worker_t *w, const mdm_message_t *m, int64_t now)
{
    store_t *s = w->store;
    if (m->user_channel || strcmp(m->status, "Acknowledged") != 0 || !s->ops->enrollment_set_supervised)
        return;
    const plist_t *q = plist_dict_get(m->root, "QueryResponses");
    const plist_t *sup = q ? plist_dict_get(q, "IsSupervised") : NULL;
    if (!sup || plist_type(sup) != PLIST_BOOL)
        return;
    if (s->ops->enrollment_set_supervised(s, m->device_id, plist_bool(sup), now) == STORE_ERR)
        log_warn("cannot record supervision of %s: %s", m->device_id, s->ops->errmsg(s));
}

void mdm_connect_dispatch(worker_t *w, const http_request_t *req, mdm_message_t *m, http_response_t *resp)
{
    store_t *s = w->store;
    HTTP_LOG(resp, log_id, m->id);
    HTTP_LOG(resp, log_type, m->status ? m->status : "-");
    if (!m->status) {
        http_refuse(resp, 400, 0, "command report without Status");
        return;
    }
    int idle = strcmp(m->status, "Idle") == 0;
    if (!idle && !known_result_status(m->status)) {
        http_refuse(resp, 400, 0, "unknown Status '%.64s'", m->status);
        return;
    }
    if (!idle && !m->command_uuid) {
        http_refuse(resp, 400, 0, "Status %s without CommandUUID", m->status);
        return;
    }
    const plist_t *chain = plist_dict_get(m->root, "ErrorChain");
    if (chain && plist_type(chain) != PLIST_ARRAY) {
        http_refuse(resp, 400, 0, "ErrorChain must be an array");
        return;
    }

    char why[256];
    mdm_identity_t ident;
    int icode = mdm_identify(w, req, &ident, why, sizeof why);
    if (icode != 200) {
        http_refuse(resp, icode, 0, "%s", why);
        return;
    }
    enrollment_t dev;
    int code = mdm_authorize(w, &ident, m->device_id, &dev, why, sizeof why);
    mdm_identity_clear(&ident);
    if (code != 200) {
        http_refuse(resp, code, 0, "%s", why);
        return;
    }
    int64_t last_seen = 0;
    int silent = 0;
    code = mdm_channel_active(w, m, &dev, &last_seen, &silent, why, sizeof why);
    int awaiting = dev.awaiting_configuration;
    enrollment_free(&dev);
    if (code) {
        http_refuse(resp, code, 0, "%s", why);
        return;
    }

    int64_t now = util_now();
    if ((silent || now - last_seen >= LAST_SEEN_GRANULARITY) && s->ops->touch(s, m->id, now) != STORE_OK)
        log_warn("cannot record last-seen for %s: %s", m->id, s->ops->errmsg(s));

    command_report_t report;
    char applied_type[64] = "";
    char *chain_json = NULL;
    if (!idle) {
        if (chain) {
            json_t *j = plist_to_json(chain);
            chain_json = j ? json_dumps(j, JSON_COMPACT) : NULL;
            json_decref(j);
        }
        report = (command_report_t){.command_uuid = m->command_uuid,
                                    .status = m->status,
                                    .raw = req->body,
                                    .raw_len = req->body_len,
                                    .error_chain_json = chain_json,
                                    .applied_type = applied_type,
                                    .applied_type_len = sizeof applied_type};
    }
    int applied = 0;
    command_t next;
    memset(&next, 0, sizeof next);
    int rc = s->ops->command_exchange(s, m->id, idle ? NULL : &report, now, &applied, &next);
    free(chain_json);
    if (rc == STORE_ERR) {
        /* 503, never 401: the device keeps its result and retries. */
        http_refuse(resp, 503, 0, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    if (!idle && !applied)
        log_info("result %s for command %.64s ignored: not pending for %s (repeat or unknown)", m->status,
                 m->command_uuid, m->id);
    if (applied)
        record_supervision(w, m, now);
    /* An erased phone never checks out: its watches learn of it here. */
    if (applied && !m->user_channel && strcmp(m->status, "Acknowledged") == 0 &&
        strcmp(applied_type, "EraseDevice") == 0)
        watch_on_phone_gone(s, m->device_id, "was erased (EraseDevice acknowledged)");
    /* ADE await configuration: DeviceConfigured once the setup commands
     * are done; its answer clears the flag. */
    if (!m->user_channel)
        ade_await_after_exchange(s, m->device_id, awaiting, applied ? m->command_uuid : NULL,
                                 applied ? m->status : NULL, now, &rc, &next);
    /* A DDM sync command is stored without Data; it gets the channel's
     * current tokens now, so however many changes were coalesced into it
     * the device sees the latest DeclarationsToken. */
    if (rc == STORE_OK && ddm_command_for_device(s, m->id, &next) != 0) {
        command_free(&next);
        http_refuse(resp, 503, 0, "storage error preparing the DeclarativeManagement command: %s",
                    s->ops->errmsg(s));
        return;
    }
    char type[96];
    if (rc == STORE_OK) {
        snprintf(type, sizeof type, "%s next=%s", m->status, next.request_type);
        HTTP_LOG(resp, log_type, type);
        http_reply(resp, 200, "application/xml; charset=UTF-8", next.body, next.body_len);
        command_free(&next);
    } else {
        http_reply(resp, 200, NULL, NULL, 0); /* zero bytes: nothing to do */
    }
}

void mdm_connect_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    mdm_message_t m;
    char why[256];
    if (mdm_message_parse(req->body, req->body_len, &m, why, sizeof why) != 0) {
        http_refuse(resp, 400, 0, "command report: %s", why);
        return;
    }
    mdm_connect_dispatch(w, req, &m, resp);
    mdm_message_free(&m);
}

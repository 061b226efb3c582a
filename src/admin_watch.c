/* Admin API for Apple Watch enrollment (called by admin_api_handle after the
 * key check; `sub` is the path after "/v1/"):
 *
 *   PUT    devices/{phone}/watch-enrollment   enable for one iPhone
 *   DELETE devices/{phone}/watch-enrollment   disable
 *   GET    devices/{phone}/watch-enrollment   {"enabled", "supervised", "state"}
 *   PUT    groups/{group}/watch-enrollment    enable for a device group
 *   DELETE groups/{group}/watch-enrollment    disable
 *   GET    devices/{phone}/watches            the watches paired through it
 *
 * Enabling (re)writes three declarations and one set, then assigns the set:
 *   orchard.watch-enrollment.anchor         com.apple.asset.credential.certificate:
 *       Reference {DataURL <public>/mdm/assets/orchard-anchor.pem,
 *       ContentType application/pem, Size, Hash-SHA-256}, Authentication {Type MDM}
 *       — the PEM of orchard's distinct anchors (TLS chain, then CA), which
 *       GET /mdm/assets/orchard-anchor.pem (mdm_asset.c) serves built in;
 *       both encode the same certificates the same way, so Size and hash
 *       match the bytes served (the tests check it);
 *   orchard.watch-enrollment.configuration  com.apple.configuration.watch.enrollment:
 *       EnrollmentProfileURL <public>/enroll/watch,
 *       AnchorCertificateAssetReferences [the asset];
 *   orchard.watch-enrollment.activation     com.apple.activation.simple:
 *       StandardConfigurations [the configuration];
 *   set orchard.watch-enrollment            those three.
 * Rewriting is idempotent (unchanged content keeps its ServerToken), so a
 * changed public URL or TLS certificate is picked up by enabling again.
 * Every change ends with ddm_sync, which pushes the phones whose
 * declarations changed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "api_json.h"
#include "app.h"
#include "ddm.h"
#include "log.h"
#include "mdm_message.h"
#include "strlist.h"
#include "util.h"
#include "watch.h"

#define WATCH_SET "orchard.watch-enrollment"
#define WATCH_ANCHOR_ID "orchard.watch-enrollment.anchor"
#define WATCH_CONFIG_ID "orchard.watch-enrollment.configuration"
#define WATCH_ACTIVATION_ID "orchard.watch-enrollment.activation"
#define WATCH_ANCHOR_ASSET "orchard-anchor.pem"

/* public_url without trailing slashes + suffix. */
static char *public_join(const app_t *app, const char *suffix)
{
    const char *base = app->cfg->public_url;
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    return util_strdup_printf("%.*s%s", (int)n, base, suffix);
}

/* PEM of each distinct anchor certificate, in order: byte for byte what
 * mdm_asset.c serves as orchard-anchor.pem. Heap, *len bytes. */
static char *anchors_pem(const app_t *app, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    int ok = b != NULL;
    for (int i = 0; ok && i < sk_X509_num(app->anchors); i++) {
        X509 *x = sk_X509_value(app->anchors, i);
        int dup = 0;
        for (int j = 0; j < i; j++)
            dup |= X509_cmp(sk_X509_value(app->anchors, j), x) == 0;
        if (!dup)
            ok = PEM_write_bio_X509(b, x) == 1;
    }
    char *data = NULL;
    long n = ok ? BIO_get_mem_data(b, &data) : 0;
    char *copy = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (copy) {
        memcpy(copy, data, (size_t)n);
        copy[n] = '\0';
        *len = (size_t)n;
    }
    BIO_free(b);
    return copy;
}

static int put_decl(store_t *s, json_t *decl, char *err, size_t errlen)
{
    int changed = 0;
    int status = decl ? ddm_declaration_put(s, decl, &changed, err, errlen) : 503;
    if (!decl)
        util_set_err(err, errlen, "out of memory");
    json_decref(decl);
    return status == 200 || status == 201 ? 0 : status;
}

/* Writes the anchor data, the three declarations and the set. 0 or an HTTP
 * status with err. */
static int ensure_declarations(worker_t *w, char *err, size_t errlen)
{
    store_t *s = w->store;
    const app_t *app = w->app;
    if (!s->ops->set_put) {
        util_set_err(err, errlen, "this storage backend cannot keep declarations");
        return 503;
    }
    size_t pem_len = 0;
    char *pem = anchors_pem(app, &pem_len);
    if (!pem) {
        util_set_err(err, errlen, "cannot encode the anchor certificates");
        return 503;
    }
    unsigned char md[32];
    char hex[65];
    EVP_Digest(pem, pem_len, md, NULL, EVP_sha256(), NULL);
    util_hex(md, sizeof md, hex);
    free(pem);
    int64_t now = util_now();
    char *data_url = public_join(app, "/mdm/assets/" WATCH_ANCHOR_ASSET);
    char *profile_url = public_join(app, "/enroll/watch");
    int status = 0;
    if (!data_url || !profile_url) {
        util_set_err(err, errlen, "out of memory");
        status = 503;
        goto out;
    }
    json_t *asset = json_pack("{s:s,s:s,s:{s:{s:s,s:s,s:I,s:s},s:{s:s}}}", "Type",
                              "com.apple.asset.credential.certificate", "Identifier", WATCH_ANCHOR_ID, "Payload",
                              "Reference", "DataURL", data_url, "ContentType", "application/pem", "Size",
                              (json_int_t)pem_len, "Hash-SHA-256", hex, "Authentication", "Type", "MDM");
    json_t *config = json_pack("{s:s,s:s,s:{s:s,s:[s]}}", "Type", WATCH_ENROLLMENT_TYPE, "Identifier",
                               WATCH_CONFIG_ID, "Payload", "EnrollmentProfileURL", profile_url,
                               "AnchorCertificateAssetReferences", WATCH_ANCHOR_ID);
    json_t *activation = json_pack("{s:s,s:s,s:{s:[s]}}", "Type", "com.apple.activation.simple", "Identifier",
                                   WATCH_ACTIVATION_ID, "Payload", "StandardConfigurations", WATCH_CONFIG_ID);
    /* Referenced declarations first: a reference must name an existing one.
     * put_decl takes each; the ones after a failure are released unused. */
    json_t *decls[] = {asset, config, activation};
    for (size_t i = 0; i < 3; i++) {
        if (status == 0)
            status = put_decl(s, decls[i], err, errlen);
        else
            json_decref(decls[i]);
    }
    if (status != 0) {
        if (status != 503) {
            log_error("watch enrollment declarations refused: %s", err);
            status = 500; /* orchard's own declarations must validate */
        }
        goto out;
    }
    const char *members[] = {WATCH_ACTIVATION_ID, WATCH_CONFIG_ID, WATCH_ANCHOR_ID};
    if (s->ops->set_put(s, WATCH_SET, members, 3, now) != STORE_OK) {
        util_set_err(err, errlen, "storage error saving set %s: %s", WATCH_SET, s->ops->errmsg(s));
        status = 503;
    }
out:
    free(data_url);
    free(profile_url);
    return status;
}

static json_t *sync_now(worker_t *w)
{
    ddm_sync_report_t rep;
    char err[256] = "";
    if (ddm_sync(w->store, w->app->pusher, &rep, err, sizeof err) != 0) {
        log_warn("watch enrollment: DDM sync incomplete (a later change finishes it): %s", err);
        return json_pack("{s:s}", "error", err);
    }
    return json_pack("{s:I,s:I,s:I}", "changed", (json_int_t)rep.changed, "queued", (json_int_t)rep.queued,
                     "pushed", (json_int_t)rep.pushed);
}

/* GetToken needs a phone orchard knows is supervised: ask the phones being
 * enabled that never answered, rather than leaving it to the admin. */
static int ask_supervision(worker_t *w, const char *kind, const char *target)
{
    store_t *s = w->store;
    int asked = 0;
    if (strcmp(kind, DDM_TARGET_DEVICE) == 0)
        return watch_ask_supervision(s, w->app->pusher, target) == 1;
    strlist_t l = {0};
    if (s->ops->group_members(s, target, strlist_collect, &l) != STORE_OK)
        log_warn("watch enrollment: cannot list group %s: %s", target, s->ops->errmsg(s));
    for (size_t i = 0; i < l.n; i++)
        asked += watch_ask_supervision(s, w->app->pusher, l.v[i]) == 1;
    strlist_free(&l);
    return asked;
}

/* PUT / DELETE .../watch-enrollment for a device or a group. */
static void watch_enrollment_set(worker_t *w, const http_request_t *req, const char *kind, const char *target,
                                 http_response_t *resp)
{
    store_t *s = w->store;
    char why[300];
    int status;
    if (req->method == HTTP_M_PUT) {
        if ((status = ensure_declarations(w, why, sizeof why)) != 0) {
            http_refuse(resp, status, 1, "cannot prepare the watch enrollment declarations: %s", why);
            return;
        }
        if (s->ops->set_assign(s, WATCH_SET, kind, target, util_now()) != STORE_OK) {
            http_refuse(resp, 503, 1, "storage error assigning %s: %s", WATCH_SET, s->ops->errmsg(s));
            return;
        }
        log_info("watch enrollment enabled for %s %s", kind, target);
    } else {
        int rc = s->ops->set_unassign ? s->ops->set_unassign(s, WATCH_SET, kind, target) : STORE_ERR;
        if (rc == STORE_NOTFOUND) {
            http_refuse(resp, 404, 1, "watch enrollment is not enabled for %s %.100s", kind, target);
            return;
        }
        if (rc != STORE_OK) {
            http_refuse(resp, 503, 1, "storage error unassigning %s: %s", WATCH_SET,
                        s->ops->set_unassign ? s->ops->errmsg(s) : "not supported");
            return;
        }
        log_info("watch enrollment disabled for %s %s", kind, target);
    }
    json_t *o = json_pack("{s:s,s:s,s:b,s:o}", kind, target, "set", WATCH_SET, "enabled",
                          req->method == HTTP_M_PUT, "sync", sync_now(w));
    if (req->method == HTTP_M_PUT)
        json_object_set_new(o, "supervision_queries", json_integer(ask_supervision(w, kind, target)));
    char *url = public_join(w->app, "/enroll/watch");
    json_object_set_new(o, "enrollment_profile_url", api_json_string(url));
    free(url);
    http_reply_json(resp, 200, o);
}

static int collect_pairing(void *ctx, const watch_pairing_t *p)
{
    json_array_append_new(ctx, json_pack("{s:s,s:s,s:s,s:o,s:o,s:I}", "watch_udid", p->watch_udid, "phone_udid",
                                         p->phone_udid, "state", p->state, "paired_at", api_json_time(p->paired_at),
                                         "updated_at", api_json_time(p->updated_at), "paired_at_unix",
                                         (json_int_t)p->paired_at));
    return 0;
}

static void phone_watches(worker_t *w, const char *phone, http_response_t *resp)
{
    store_t *s = w->store;
    json_t *arr = json_array();
    if (!s->ops->phone_watches || s->ops->phone_watches(s, phone, collect_pairing, arr) != STORE_OK) {
        json_decref(arr);
        http_refuse(resp, 503, 1, "storage error: %s", s->ops->phone_watches ? s->ops->errmsg(s) : "not supported");
        return;
    }
    /* After the listing (its callback must not use the handle): the shown
     * state says "phone_gone" once the phone has checked out. */
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        watch_pairing_t p = {.watch_udid = (char *)json_string_value(json_object_get(o, "watch_udid")),
                             .phone_udid = (char *)phone,
                             .state = (char *)json_string_value(json_object_get(o, "state"))};
        p.paired_at = (int64_t)json_integer_value(json_object_get(o, "paired_at_unix"));
        json_object_set_new(o, "state", json_string(watch_pairing_state(s, &p)));
        json_object_del(o, "paired_at_unix");
    }
    http_reply_json(resp, 200, json_pack("{s:s,s:o}", "phone", phone, "watches", arr));
}

static void phone_status(worker_t *w, const char *phone, http_response_t *resp)
{
    store_t *s = w->store;
    enrollment_t e;
    int rc = s->ops->enrollment_get(s, phone, &e);
    if (rc != STORE_OK) {
        http_refuse(resp, rc == STORE_NOTFOUND ? 404 : 503, 1, "%s",
                    rc == STORE_NOTFOUND ? "no such enrollment" : s->ops->errmsg(s));
        return;
    }
    int enabled = watch_enrollment_enabled(s, phone);
    json_t *o = json_pack("{s:s,s:s}", "phone", phone, "state", e.state);
    json_object_set_new(o, "supervised", e.supervised < 0 ? json_null() : json_boolean(e.supervised));
    json_object_set_new(o, "enabled", enabled < 0 ? json_null() : json_boolean(enabled));
    enrollment_free(&e);
    http_reply_json(resp, 200, o);
}

/* "devices/{id}/{leaf}" or "groups/{name}/{leaf}": copies {id} into out. */
static int match(const char *sub, const char *prefix, const char *leaf, char *out, size_t outlen)
{
    size_t pl = strlen(prefix);
    if (strncmp(sub, prefix, pl) != 0)
        return 0;
    const char *id = sub + pl, *slash = strchr(id, '/');
    if (!slash || strcmp(slash + 1, leaf) != 0)
        return 0;
    size_t n = (size_t)(slash - id);
    if (n == 0 || n >= outlen)
        return 0;
    memcpy(out, id, n);
    out[n] = '\0';
    return 1;
}

int admin_watch_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp)
{
    char id[MDM_ID_MAX + 1];
    if (match(sub, "devices/", "watch-enrollment", id, sizeof id) ||
        match(sub, "groups/", "watch-enrollment", id, sizeof id)) {
        int group = strncmp(sub, "groups/", 7) == 0;
        HTTP_LOG(resp, log_id, id);
        HTTP_LOG(resp, log_type, "watch-enrollment");
        if (!mdm_id_valid(id)) {
            http_refuse(resp, 400, 1, "'%.64s' is not a valid %s", id, group ? "group name" : "enrollment id");
            return 1;
        }
        if (req->method == HTTP_M_GET && !group) {
            phone_status(w, id, resp);
            return 1;
        }
        if (req->method != HTTP_M_PUT && req->method != HTTP_M_DELETE) {
            http_refuse(resp, 405, 1, "watch-enrollment takes PUT (enable) or DELETE (disable)%s",
                        group ? "" : ", or GET");
            return 1;
        }
        if (!group) {
            /* Only a device-channel enrollment can be an iPhone to pair with. */
            enrollment_t e;
            int rc = w->store->ops->enrollment_get(w->store, id, &e);
            if (rc != STORE_OK) {
                http_refuse(resp, rc == STORE_NOTFOUND ? 404 : 503, 1, "%s %.100s",
                            rc == STORE_NOTFOUND ? "no enrollment with id" : "storage error for", id);
                return 1;
            }
            int device = strcmp(e.id, e.device_id) == 0;
            enrollment_free(&e);
            if (!device) {
                http_refuse(resp, 400, 1, "%.100s is a user channel; watch enrollment is enabled for the device", id);
                return 1;
            }
        }
        watch_enrollment_set(w, req, group ? DDM_TARGET_GROUP : DDM_TARGET_DEVICE, id, resp);
        return 1;
    }
    if (match(sub, "devices/", "watches", id, sizeof id)) {
        HTTP_LOG(resp, log_id, id);
        HTTP_LOG(resp, log_type, "watches");
        if (req->method != HTTP_M_GET)
            http_refuse(resp, 405, 1, "watches takes GET");
        else if (!mdm_id_valid(id))
            http_refuse(resp, 400, 1, "'%.64s' is not a valid enrollment id", id);
        else
            phone_watches(w, id, resp);
        return 1;
    }
    return 0;
}

/* Admin API for enrollment (JSON, key already checked by admin_api.c):
 *
 *   GET    /v1/certificates?udid=&expiring_within_days=&limit=   issued certificates
 *   GET    /v1/certificates/{serial}
 *   POST   /v1/certificates/{serial}/revoke
 *   GET|PUT|DELETE /v1/admission/{serial-or-udid}   known-devices list
 *   POST   /v1/challenges?udid=          a one-time SCEP challenge, shown once
 *   POST   /v1/renewals?days=N[&dry_run=1]   identity renewal
 *
 * Renewal: every active enrollment whose bound identity certificate (one
 * orchard issued) expires within N days gets an InstallProfile command
 * carrying a fresh signed enrollment profile: same top-level
 * PayloadIdentifier (it replaces the installed one), a one-time challenge
 * bound to the device and SCEP subject CN = its UDID. The device enrolls
 * with SCEP, then re-authenticates with the new certificate; orchard
 * accepts it for the active enrollment because it names the UDID (identity
 * rule 4 in docs/ARCHITECTURE.md). Renewal commands use CommandUUIDs
 * starting with "renew-", so a second call does not queue another one
 * while the first is still pending.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "api_json.h"
#include "app.h"
#include "enroll_http.h"
#include "log.h"
#include "mdm_message.h"
#include "plist.h"
#include "util.h"

#define RENEW_PREFIX "renew-"
#define RENEW_MAX 10000 /* devices per call, as enqueue's target cap */
#define MAX_DAYS 3650

/* ---- helpers ---------------------------------------------------------------- */

static void storage_error(store_t *s, http_response_t *resp)
{
    http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
}

/* The store op exists (backends gain enrollment support over time). */
static int have_op(int present, const char *what, http_response_t *resp)
{
    if (present)
        return 1;
    http_refuse(resp, 501, 1, "this storage backend does not support %s", what);
    return 0;
}

/* Whole number in [min, max] from the query; 1 found, 0 absent, -1 bad. */
static int query_int(const http_request_t *req, const char *name, long min, long max, long *out)
{
    char buf[24];
    if (!http_query(req, name, buf, sizeof buf))
        return 0;
    char *end;
    long v = strtol(buf, &end, 10);
    if (!*buf || *end || v < min || v > max)
        return -1;
    *out = v;
    return 1;
}

static int query_flag(const http_request_t *req, const char *name)
{
    char buf[8];
    return http_query(req, name, buf, sizeof buf) && strcmp(buf, "0") != 0 && strcasecmp(buf, "false") != 0;
}

/* Normalises a serial as the store keeps it: lower-case hex of the
 * magnitude, colons allowed in input, leading zero bytes dropped (one kept
 * for zero). 0 on success. */
static int normalize_serial(const char *in, char *out, size_t outlen)
{
    char hex[130];
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ':')
            continue;
        char c = (char)((*p >= 'A' && *p <= 'F') ? *p + 32 : *p);
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n + 2 >= sizeof hex)
            return -1;
        hex[n++] = c;
    }
    if (n == 0)
        return -1;
    hex[n] = '\0';
    const char *h = hex;
    char padded[132];
    if (n % 2) {
        snprintf(padded, sizeof padded, "0%s", hex);
        h = padded;
        n++;
    }
    while (n > 2 && h[0] == '0' && h[1] == '0') {
        h += 2;
        n -= 2;
    }
    if (n + 1 > outlen)
        return -1;
    memcpy(out, h, n + 1);
    return 0;
}

static json_t *cert_json(const issued_cert_t *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "serial", api_json_string(c->serial));
    json_object_set_new(o, "subject", api_json_string(c->subject));
    json_object_set_new(o, "enrollment_id", api_json_string(c->enrollment_id));
    json_object_set_new(o, "sha256", api_json_string(c->sha256));
    json_object_set_new(o, "not_before", api_json_time(c->not_before));
    json_object_set_new(o, "not_after", api_json_time(c->not_after));
    json_object_set_new(o, "issued_at", api_json_time(c->issued_at));
    json_object_set_new(o, "revoked", json_boolean(c->revoked_at > 0));
    json_object_set_new(o, "revoked_at", api_json_time(c->revoked_at));
    return o;
}

/* ---- certificates ------------------------------------------------------------ */

static int collect_cert(void *ctx, const issued_cert_t *c)
{
    json_array_append_new(ctx, cert_json(c));
    return 0;
}

static int list_has_sha(json_t *arr, const char *sha)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(json_object_get(v, "sha256"));
        if (s && strcmp(s, sha) == 0)
            return 1;
    }
    return 0;
}

static void certs_list(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    store_t *s = w->store;
    if (!have_op(s->ops->cert_list != NULL, "issued certificates", resp))
        return;
    char udid[MDM_ID_MAX + 2];
    const char *id = http_query(req, "udid", udid, sizeof udid);
    if (id && !mdm_id_valid(id)) {
        http_refuse(resp, 400, 1, "udid is not a valid enrollment id");
        return;
    }
    long days = 0, limit = 100;
    int has_days = query_int(req, "expiring_within_days", 0, MAX_DAYS, &days);
    if (has_days < 0 || query_int(req, "limit", 1, 1000, &limit) < 0) {
        http_refuse(resp, 400, 1, "expiring_within_days must be 0..%d and limit 1..1000", MAX_DAYS);
        return;
    }
    int64_t before = has_days ? util_now() + (int64_t)days * 86400 : 0;
    if (has_days && before <= 0)
        before = 1;
    json_t *arr = json_array();
    if (s->ops->cert_list(s, id, before, (int)limit, collect_cert, arr) != STORE_OK) {
        json_decref(arr);
        storage_error(s, resp);
        return;
    }
    /* A device enrolled with an unbound challenge (GET /enroll) has
     * certificates recorded without its id; the one it is bound to still
     * belongs in its list. */
    if (id && s->ops->cert_by_sha256 && json_array_size(arr) < (size_t)limit) {
        enrollment_t e;
        if (s->ops->enrollment_get(s, id, &e) == STORE_OK) {
            issued_cert_t c;
            if (e.cert_sha256 && !list_has_sha(arr, e.cert_sha256) &&
                s->ops->cert_by_sha256(s, e.cert_sha256, &c) == STORE_OK) {
                if (!has_days || (c.revoked_at == 0 && c.not_after < before))
                    json_array_append_new(arr, cert_json(&c));
                issued_cert_free(&c);
            }
            enrollment_free(&e);
        }
    }
    if (id)
        HTTP_LOG(resp, log_id, id);
    http_reply_json(resp, 200, json_pack("{s:o}", "certificates", arr));
}

static void cert_one(worker_t *w, const http_request_t *req, const char *rest, http_response_t *resp)
{
    store_t *s = w->store;
    char serial[130], raw[130];
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *action = slash ? slash + 1 : "";
    if (n == 0 || n >= sizeof raw) {
        http_refuse(resp, 404, 1, "no such certificate");
        return;
    }
    memcpy(raw, rest, n);
    raw[n] = '\0';
    if (normalize_serial(raw, serial, sizeof serial) != 0) {
        http_refuse(resp, 400, 1, "a certificate serial is hexadecimal (colons allowed)");
        return;
    }
    HTTP_LOG(resp, log_id, serial);
    if (*action == '\0' && req->method == HTTP_M_GET) {
        if (!have_op(s->ops->cert_get != NULL, "issued certificates", resp))
            return;
        issued_cert_t c;
        int rc = s->ops->cert_get(s, serial, &c);
        if (rc == STORE_NOTFOUND)
            http_refuse(resp, 404, 1, "no certificate with serial %s", serial);
        else if (rc != STORE_OK)
            storage_error(s, resp);
        else {
            http_reply_json(resp, 200, cert_json(&c));
            issued_cert_free(&c);
        }
    } else if (strcmp(action, "revoke") == 0 && req->method == HTTP_M_POST) {
        if (!have_op(s->ops->cert_revoke != NULL, "revocation", resp))
            return;
        HTTP_LOG(resp, log_type, "revoke");
        int rc = s->ops->cert_revoke(s, serial, util_now());
        if (rc == STORE_NOTFOUND) {
            http_refuse(resp, 404, 1, "no unrevoked certificate with serial %s", serial);
            return;
        }
        if (rc != STORE_OK) {
            storage_error(s, resp);
            return;
        }
        /* The Mdm-Signature chain cache would otherwise accept the revoked
         * certificate for up to five more minutes. */
        identity_verifier_forget_all(w->app->verifier);
        log_info("certificate revoked serial=%s", serial);
        issued_cert_t c;
        if (s->ops->cert_get && s->ops->cert_get(s, serial, &c) == STORE_OK) {
            http_reply_json(resp, 200, cert_json(&c));
            issued_cert_free(&c);
        } else {
            http_reply_json(resp, 200, json_pack("{s:s,s:b}", "serial", serial, "revoked", 1));
        }
    } else {
        http_refuse(resp, *action || req->method != HTTP_M_GET ? 405 : 404, 1,
                    "certificates/{serial} takes GET, certificates/{serial}/revoke takes POST");
    }
}

/* ---- admission ------------------------------------------------------------------ */

static void admission(worker_t *w, const http_request_t *req, const char *id, http_response_t *resp)
{
    store_t *s = w->store;
    if (!mdm_id_valid(id)) {
        http_refuse(resp, 400, 1, "'%.64s' is not a valid serial number or UDID", id);
        return;
    }
    HTTP_LOG(resp, log_id, id);
    int rc;
    if (req->method == HTTP_M_PUT) {
        if (!have_op(s->ops->device_allow != NULL, "the admission list", resp))
            return;
        HTTP_LOG(resp, log_type, "allow");
        rc = s->ops->device_allow(s, id, util_now());
        if (rc != STORE_OK && rc != STORE_CONFLICT) {
            storage_error(s, resp);
            return;
        }
        log_info("admission: %s may enroll", id);
        http_reply_json(resp, 200, json_pack("{s:s,s:b}", "id", id, "allowed", 1));
    } else if (req->method == HTTP_M_DELETE) {
        if (!have_op(s->ops->device_disallow != NULL, "the admission list", resp))
            return;
        HTTP_LOG(resp, log_type, "deny");
        rc = s->ops->device_disallow(s, id);
        if (rc == STORE_NOTFOUND) {
            http_refuse(resp, 404, 1, "%.100s is not on the admission list", id);
            return;
        }
        if (rc != STORE_OK) {
            storage_error(s, resp);
            return;
        }
        log_info("admission: %s removed from the list", id);
        http_reply_json(resp, 200, json_pack("{s:s,s:b}", "id", id, "allowed", 0));
    } else if (req->method == HTTP_M_GET) {
        if (!have_op(s->ops->device_allowed != NULL, "the admission list", resp))
            return;
        rc = s->ops->device_allowed(s, id, id);
        if (rc != STORE_OK && rc != STORE_NOTFOUND) {
            storage_error(s, resp);
            return;
        }
        http_reply_json(resp, 200, json_pack("{s:s,s:b,s:s}", "id", id, "allowed", rc == STORE_OK, "policy",
                                             w->app->cfg->admission_known ? "known" : "open"));
    } else {
        http_refuse(resp, 405, 1, "admission/{id} takes GET, PUT or DELETE");
    }
}

/* ---- challenges ------------------------------------------------------------------ */

static void challenge_create(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    if (req->method != HTTP_M_POST) {
        http_refuse(resp, 405, 1, "challenges takes POST");
        return;
    }
    char udid[MDM_ID_MAX + 2];
    const char *id = http_query(req, "udid", udid, sizeof udid);
    if (id && !mdm_id_valid(id)) {
        http_refuse(resp, 400, 1, "udid is not a valid enrollment id");
        return;
    }
    HTTP_LOG(resp, log_type, "challenge");
    if (id)
        HTTP_LOG(resp, log_id, id);
    char challenge[65], why[256];
    int status = enroll_challenge_new(w, id, challenge, why, sizeof why);
    if (status != 0) {
        http_refuse(resp, status, 1, "%s", why);
        return;
    }
    /* Shown this once: only a hash is stored. */
    http_reply_json(resp, 201,
                    json_pack("{s:s,s:o,s:o}", "challenge", challenge, "udid", api_json_string(id), "expires_at",
                              api_json_time(util_now() + ENROLL_CHALLENGE_TTL)));
    OPENSSL_cleanse(challenge, sizeof challenge);
}

/* ---- renewals -------------------------------------------------------------------- */

typedef struct {
    char *serial, *sha256;
    int64_t not_after;
} expiring_t;

typedef struct {
    expiring_t *v;
    size_t n, cap;
    int oom;
} expiring_list_t;

/* Copies the list out first: nothing else may run on the handle while the
 * backend iterates (a write inside the callback would nest transactions). */
static int collect_expiring(void *ctx, const issued_cert_t *c)
{
    expiring_list_t *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        expiring_t *g = realloc(l->v, cap * sizeof *g);
        if (!g) {
            l->oom = 1;
            return 1;
        }
        l->v = g;
        l->cap = cap;
    }
    expiring_t *e = &l->v[l->n];
    e->serial = strdup(c->serial ? c->serial : "");
    e->sha256 = c->sha256 ? strdup(c->sha256) : NULL;
    e->not_after = c->not_after;
    l->n++;
    if (!e->serial) {
        l->oom = 1;
        return 1;
    }
    return 0;
}

static int find_pending_renewal(void *ctx, const command_target_t *t)
{
    char *found = ctx;
    if (t->command_uuid && strncmp(t->command_uuid, RENEW_PREFIX, strlen(RENEW_PREFIX)) == 0) {
        snprintf(found, 128, "%s", t->command_uuid);
        return 1;
    }
    return 0;
}

/* The InstallProfile command (mdm/commands/profile.install.yaml: Payload
 * is the profile as <data>). */
static char *install_profile_command(const char *uuid, const unsigned char *profile, size_t len, size_t *xml_len)
{
    plist_t *c = plist_new_dict(), *inner = plist_new_dict();
    int ok = c && inner;
    ok = ok && plist_dict_set(inner, "RequestType", plist_new_string("InstallProfile")) == 0;
    ok = ok && plist_dict_set(inner, "Payload", plist_new_data(profile, len)) == 0;
    if (ok) {
        ok = plist_dict_set(c, "Command", inner) == 0;
        inner = NULL;
    }
    ok = ok && plist_dict_set(c, "CommandUUID", plist_new_string(uuid)) == 0;
    char *xml = ok ? plist_to_xml(c, xml_len) : NULL;
    plist_free(inner);
    plist_free(c);
    return xml;
}

/* Queues and pushes the renewal for one device; fills its result entry. */
static void renew_one(worker_t *w, const enrollment_t *e, json_t *entry)
{
    store_t *s = w->store;
    char why[256], uuid[37], cmd_uuid[64];
    unsigned char *profile = NULL;
    size_t plen = 0;
    int status = enroll_profile_make(w, e->udid, 0, &profile, &plen, why, sizeof why);
    if (status != 0) {
        json_object_set_new(entry, "error", json_string(why));
        return;
    }
    size_t xml_len = 0;
    char *xml = NULL;
    if (util_uuid4(uuid) == 0) {
        snprintf(cmd_uuid, sizeof cmd_uuid, RENEW_PREFIX "%s", uuid);
        xml = install_profile_command(cmd_uuid, profile, plen, &xml_len);
    }
    /* The profile holds a live challenge. */
    OPENSSL_cleanse(profile, plen);
    OPENSSL_free(profile);
    if (!xml) {
        json_object_set_new(entry, "error", json_string("out of memory building the command"));
        return;
    }
    int64_t now = util_now();
    command_t c = {.uuid = cmd_uuid,
                   .request_type = "InstallProfile",
                   .body = (unsigned char *)xml,
                   .body_len = xml_len,
                   .created_at = now};
    const char *ids[1] = {e->id};
    int st = STORE_ERR;
    int rc = s->ops->command_enqueue(s, &c, ids, 1, &st, now);
    OPENSSL_cleanse(xml, xml_len);
    free(xml);
    if (rc != STORE_OK || st != STORE_OK) {
        json_object_set_new(entry, "error",
                            json_string(rc == STORE_ERR ? s->ops->errmsg(s) : "enrollment vanished while queueing"));
        return;
    }
    json_object_set_new(entry, "command_uuid", json_string(cmd_uuid));
    char err[700];
    if (pusher_push(w->app->pusher, e, err, sizeof err) == 0)
        json_object_set_new(entry, "push_result", json_string("queued"));
    else
        json_object_set_new(entry, "push_error", json_string(err));
    log_info("renewal queued id=%s command=%s", e->id, cmd_uuid);
}

static void renewals(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    store_t *s = w->store;
    if (req->method != HTTP_M_POST) {
        http_refuse(resp, 405, 1, "renewals takes POST");
        return;
    }
    if (!have_op(s->ops->cert_list != NULL, "issued certificates", resp))
        return;
    long days = 0;
    if (query_int(req, "days", 1, MAX_DAYS, &days) != 1) {
        http_refuse(resp, 400, 1, "days is required: certificates expiring within 1..%d days are renewed", MAX_DAYS);
        return;
    }
    int dry_run = query_flag(req, "dry_run");
    HTTP_LOG(resp, log_type, dry_run ? "renewals-dry-run" : "renewals");
    int64_t now = util_now();
    int64_t before = now + (int64_t)days * 86400;

    expiring_list_t l = {0};
    int rc = s->ops->cert_list(s, NULL, before, RENEW_MAX, collect_expiring, &l);
    if (rc != STORE_OK || l.oom) {
        if (l.oom)
            http_refuse(resp, 503, 1, "out of memory listing certificates");
        else
            storage_error(s, resp);
        goto out;
    }
    json_t *renewed = json_object(), *skipped = json_object();
    int queued = 0;
    for (size_t i = 0; i < l.n; i++) {
        expiring_t *x = &l.v[i];
        enrollment_t e;
        rc = x->sha256 ? s->ops->enrollment_by_cert(s, x->sha256, &e) : STORE_NOTFOUND;
        if (rc == STORE_ERR) {
            json_object_set_new(skipped, x->serial, json_pack("{s:s}", "reason", s->ops->errmsg(s)));
            continue;
        }
        if (rc != STORE_OK) {
            /* Replaced already, or never used to enroll. */
            json_object_set_new(skipped, x->serial,
                                json_pack("{s:s}", "reason", "not the certificate of any enrollment"));
            continue;
        }
        const char *why = NULL;
        char pending[128] = "";
        if (json_object_get(renewed, e.id))
            why = "device already handled in this call";
        else if (!e.state || strcmp(e.state, ENR_STATE_ACTIVE) != 0)
            why = "enrollment is not active";
        else if (!e.udid || !*e.udid)
            why = "enrollment has no UDID (user enrollment): a renewed certificate could not name it";
        else if (s->ops->enrollment_commands(s, e.id, 1, 1000, find_pending_renewal, pending) != STORE_OK)
            why = "storage error reading pending commands";
        if (why) {
            json_object_set_new(skipped, x->serial, json_pack("{s:s,s:s}", "enrollment_id", e.id, "reason", why));
            enrollment_free(&e);
            continue;
        }
        json_t *entry = json_pack("{s:s,s:o}", "certificate_serial", x->serial, "not_after", api_json_time(x->not_after));
        if (*pending) {
            json_object_set_new(entry, "already_pending", json_string(pending));
        } else if (!dry_run) {
            renew_one(w, &e, entry);
            if (json_object_get(entry, "command_uuid"))
                queued++;
        }
        json_object_set_new(renewed, e.id, entry);
        enrollment_free(&e);
    }
    json_t *result = json_pack("{s:I,s:o,s:o,s:o,s:I}", "days", (json_int_t)days, "expiring_before",
                               api_json_time(before), "devices", renewed, "skipped", skipped, "queued",
                               (json_int_t)queued);
    if (dry_run)
        json_object_set_new(result, "dry_run", json_true());
    if (l.n == RENEW_MAX)
        json_object_set_new(result, "truncated", json_true());
    http_reply_json(resp, 200, result);
out:
    for (size_t i = 0; i < l.n; i++) {
        free(l.v[i].serial);
        free(l.v[i].sha256);
    }
    free(l.v);
}

/* ---- dispatch ------------------------------------------------------------------- */

int admin_enroll_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp)
{
    if (strcmp(sub, "certificates") == 0) {
        if (req->method == HTTP_M_GET)
            certs_list(w, req, resp);
        else
            http_refuse(resp, 405, 1, "certificates takes GET");
    } else if (strncmp(sub, "certificates/", 13) == 0) {
        cert_one(w, req, sub + 13, resp);
    } else if (strncmp(sub, "admission/", 10) == 0) {
        admission(w, req, sub + 10, resp);
    } else if (strcmp(sub, "challenges") == 0) {
        challenge_create(w, req, resp);
    } else if (strcmp(sub, "renewals") == 0) {
        renewals(w, req, resp);
    } else {
        return 0;
    }
    return 1;
}

/* The ADE configuration URL: POST /enroll/ade (the `url` of the ADE
 * profiles orchard defines with Apple).
 *
 * During Setup Assistant the device POSTs its CMS-signed MachineInfo here
 * (machineinfo.c; signer chained to --machineinfo-ca). The checks run in
 * this order, cheapest for the person at the device first:
 *
 *   1. the SERIAL must be a device Apple's device sync assigned to one of
 *      orchard's ADE server tokens (ade_device_get) and not since released
 *      ("deleted"): otherwise 403 com.apple.unrecognized.device (JSON);
 *   2. with --ade-min-os, OS_VERSION must be at least the minimum for the
 *      device's platform (ade_min_os.h): otherwise 403
 *      com.apple.softwareupdate.required with details {OSVersion,
 *      BuildVersion}; the device updates and POSTs again. A device without
 *      OS_VERSION (before iOS 17 / macOS 14) is below any minimum;
 *   3. with --ade-auth, HTTP Digest (digest_auth.h): 401 with the
 *      challenge; the body is shown above the user name/password prompt,
 *      so it is a sentence for people, while the reason goes to the log.
 *      Checking the OS first spares people typing their password twice.
 *
 * Then the enrollment profile, exactly as POST /enroll makes it (a one-time
 * SCEP challenge bound to the UDID, subject CN = UDID): supervision is a
 * property of the ADE profile on Apple's side, not of the MDM payload.
 *
 * "Enrolled through ADE": the device's later Authenticate has to know it
 * came this way, to record it as supervised. The issued certificate cannot
 * tell (POST /enroll binds its challenge to the UDID just the same), and
 * looking the Authenticate's SerialNumber up among the ADE devices would
 * also call a device supervised that is assigned to orchard in Apple
 * Business Manager but was enrolled by hand. So this handler writes a
 * settings row "ade.enrolled.<UDID>" = {"serial", "profile_uuid",
 * "supervised", "at"} when it hands out the profile; Authenticate reads and
 * deletes it (ade_on_authenticate). The store is shared by all instances,
 * so the device may reach any of them; a device that never authenticates
 * leaves one row, overwritten if it tries again.
 */
#include "ade_enroll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "app.h"
#include "digest_auth.h"
#include "enroll_http.h"
#include "log.h"
#include "machineinfo.h"
#include "profile.h"
#include "util.h"

#define UNRECOGNIZED_DEVICE "com.apple.unrecognized.device"
#define SOFTWARE_UPDATE_REQUIRED "com.apple.softwareupdate.required"

/* ---- refusals ---------------------------------------------------------------- */

static const char *org_of(const worker_t *w)
{
    return w->app->cfg->org_name ? w->app->cfg->org_name : "orchard";
}

static void refuse_unrecognized(worker_t *w, const machineinfo_t *mi, const char *why, http_response_t *resp)
{
    char message[256];
    snprintf(message, sizeof message, "This device is not assigned to %s for automated enrollment.", org_of(w));
    http_reply_json(resp, 403,
                    json_pack("{s:s,s:s,s:s}", "code", UNRECOGNIZED_DEVICE, "description", why, "message", message));
    snprintf(resp->log_problem, sizeof resp->log_problem, "ADE: serial %.64s (UDID %.100s) %s: %s", mi->serial,
             mi->udid, why, UNRECOGNIZED_DEVICE);
}

static void refuse_old_os(worker_t *w, const machineinfo_t *mi, const ade_min_os_t *min, http_response_t *resp)
{
    char message[256];
    snprintf(message, sizeof message, "Update this device to %s%s%s or later to enroll it in %s.", min->platform,
             min->platform[0] ? " " : "", min->version, org_of(w));
    json_t *details = json_pack("{s:s}", "OSVersion", min->version);
    if (details && min->build[0])
        json_object_set_new(details, "BuildVersion", json_string(min->build));
    http_reply_json(resp, 403,
                    json_pack("{s:s,s:s,s:s,s:o}", "code", SOFTWARE_UPDATE_REQUIRED, "description",
                              "the OS version is below the server's minimum for enrollment", "message", message,
                              "details", details));
    util_set_err(resp->log_problem, sizeof resp->log_problem,
             "ADE: serial %.64s runs OS %.32s (build %.32s), below the minimum %s%s%s (--ade-min-os): %s%s",
             mi->serial, mi->os_version ? mi->os_version : "unknown (no OS_VERSION)", mi->version, min->version,
             min->platform[0] ? " for " : "", min->platform, SOFTWARE_UPDATE_REQUIRED,
             mi->mdm_can_request_software_update ? "" : " (device did not say it can update during setup)");
}

/* 401 with the Digest challenge(s). The body is what the device shows above
 * the prompt. */
static void challenge(worker_t *w, const char *serial, digest_result_t r, const char *why, http_response_t *resp)
{
    char *values[DIGEST_MAX_CHALLENGES];
    size_t n = 0;
    if (digest_auth_challenge(w->app->ade_digest, util_now(), r == DIGEST_STALE_NONCE, values, &n) != 0 ||
        n == 0) {
        http_refuse(resp, 503, 0, "ADE: cannot make a Digest challenge for serial %.64s", serial);
        return;
    }
    char body[256];
    snprintf(body, sizeof body, "Sign in with your %s account to set up this device.\n", org_of(w));
    http_reply(resp, 401, "text/plain; charset=utf-8", body, strlen(body));
    for (size_t i = 0; i < n; i++) {
        http_add_header(resp, "WWW-Authenticate", values[i]);
        free(values[i]);
    }
    http_add_header(resp, "Cache-Control", "no-store");
    if (r == DIGEST_MISSING)
        snprintf(resp->log_problem, sizeof resp->log_problem,
                 "ADE: serial %.64s: authentication required, Digest challenge sent", serial);
    else
        util_set_err(resp->log_problem, sizeof resp->log_problem, "ADE authentication failed for serial %.64s: %s: %.150s%s",
                 serial, digest_result_name(r), why, r == DIGEST_STALE_NONCE ? " (stale=true)" : "");
}

/* ---- supervision --------------------------------------------------------------- */

/* Whether the device's ADE profile makes it supervised: is_supervised from
 * the definition orchard sent Apple; a profile orchard does not know (or
 * one without the key) counts as supervised, as orchard defines them. -1
 * on storage failure. */
static int profile_supervised(store_t *s, const ade_device_t *d, char *why, size_t whylen)
{
    if (!d->profile_uuid || !*d->profile_uuid || !s->ops->ade_profile_get)
        return 1;
    ade_profile_t p;
    int rc = s->ops->ade_profile_get(s, d->profile_uuid, &p);
    if (rc == STORE_NOTFOUND)
        return 1;
    if (rc != STORE_OK) {
        util_set_err(why, whylen, "storage error reading ADE profile %s: %s", d->profile_uuid, s->ops->errmsg(s));
        return -1;
    }
    json_t *j = p.json ? json_loads(p.json, 0, NULL) : NULL;
    json_t *v = j ? json_object_get(j, "is_supervised") : NULL;
    int supervised = !json_is_false(v);
    json_decref(j);
    ade_profile_free(&p);
    return supervised;
}

static int remember_ade(store_t *s, const machineinfo_t *mi, const ade_device_t *d, int supervised, char *why,
                        size_t whylen)
{
    if (!s->ops->setting_put) {
        util_set_err(why, whylen, "this storage backend cannot keep settings");
        return -1;
    }
    int64_t now = util_now();
    json_t *j = json_pack("{s:s,s:s?,s:b,s:I}", "serial", mi->serial, "profile_uuid", d->profile_uuid,
                          "supervised", supervised, "at", (json_int_t)now);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    char *name = util_strdup_printf(ADE_ENROLLED_SETTING "%s", mi->udid);
    int rc = text && name ? s->ops->setting_put(s, name, (const unsigned char *)text, strlen(text), now) : STORE_ERR;
    if (rc != STORE_OK)
        util_set_err(why, whylen, "storage error recording the ADE enrollment: %s",
                     text && name ? s->ops->errmsg(s) : "out of memory");
    free(text);
    free(name);
    return rc == STORE_OK ? 0 : -1;
}

void ade_on_authenticate(store_t *s, const char *udid)
{
    int64_t now = util_now();
    int awaiting = 0;
    /* Re-enrollment starts Setup Assistant over: a flag left from an
     * earlier, unfinished setup must not release the new one early. */
    if (s->ops->enrollment_awaiting && s->ops->enrollment_awaiting(s, udid, &awaiting) == STORE_OK && awaiting &&
        s->ops->enrollment_set_awaiting(s, udid, 0, now) != STORE_OK)
        log_warn("ADE: cannot clear await configuration of %s: %s", udid, s->ops->errmsg(s));
    if (!s->ops->setting_get)
        return;
    char *name = util_strdup_printf(ADE_ENROLLED_SETTING "%s", udid);
    unsigned char *value = NULL;
    size_t len = 0;
    int rc = name ? s->ops->setting_get(s, name, &value, &len) : STORE_ERR;
    if (rc == STORE_OK) {
        json_t *j = json_loadb((const char *)value, len, 0, NULL);
        int supervised = j && json_is_true(json_object_get(j, "supervised"));
        const char *serial = j ? json_string_value(json_object_get(j, "serial")) : NULL;
        if (supervised && s->ops->enrollment_set_supervised(s, udid, 1, now) != STORE_OK)
            log_warn("ADE: cannot record supervision of %s: %s", udid, s->ops->errmsg(s));
        else
            log_info("ADE: device %s (serial %s) authenticated after ADE enrollment; %s", udid,
                     serial ? serial : "?", supervised ? "supervised" : "not supervised (profile is_supervised false)");
        if (s->ops->event_add(s, udid, "ade_enrolled", (const char *)value, now) != STORE_OK)
            log_warn("ADE: cannot record the ade_enrolled event of %s: %s", udid, s->ops->errmsg(s));
        if (s->ops->setting_delete(s, name) == STORE_ERR)
            log_warn("ADE: cannot delete %s: %s", name, s->ops->errmsg(s));
        json_decref(j);
        free(value);
    } else if (rc == STORE_ERR) {
        log_warn("ADE: cannot read the ADE enrollment record of %s: %s", udid,
                 name ? s->ops->errmsg(s) : "out of memory");
    }
    free(name);
}

/* ---- the handler ----------------------------------------------------------------- */

/* The request target as the client names it in Digest's uri. */
static char *request_target(const http_request_t *req)
{
    return req->query ? util_strdup_printf("%s?%s", req->path, req->query) : strdup(req->path);
}

static void enroll(worker_t *w, const http_request_t *req, const machineinfo_t *mi, http_response_t *resp)
{
    const app_t *app = w->app;
    store_t *s = w->store;
    char why[300];
    if (!s->ops->ade_device_get) {
        http_refuse(resp, 503, 0, "ADE: this storage backend has no ADE devices");
        return;
    }
    ade_device_t d;
    int rc = s->ops->ade_device_get(s, mi->serial, &d);
    if (rc == STORE_ERR) {
        http_refuse(resp, 503, 0, "ADE: storage error looking up serial %.64s: %s", mi->serial, s->ops->errmsg(s));
        return;
    }
    if (rc == STORE_NOTFOUND) {
        refuse_unrecognized(w, mi, "is not assigned to this MDM server", resp);
        return;
    }
    if (d.deleted) {
        refuse_unrecognized(w, mi, "was released from this MDM server (deleted in Apple's device sync)", resp);
        goto out;
    }
    ade_min_os_t min;
    if (ade_min_os_for(app->cfg->ade_min_os, app->cfg->ade_min_build, mi->product, &min) &&
        (!mi->os_version || ade_os_version_cmp(mi->os_version, min.version) < 0)) {
        refuse_old_os(w, mi, &min, resp);
        goto out;
    }
    char user[128] = "";
    if (app->ade_digest) {
        char *target = request_target(req);
        digest_result_t r = target ? digest_auth_verify(app->ade_digest, http_header(req, "Authorization"),
                                                        req->method_name, target, util_now(), user, sizeof user,
                                                        why, sizeof why)
                                   : DIGEST_ERROR;
        free(target);
        if (r == DIGEST_ERROR) {
            http_refuse(resp, 503, 0, "ADE: Digest authentication failed internally for serial %.64s: %s",
                        mi->serial, why);
            goto out;
        }
        if (r != DIGEST_OK) {
            challenge(w, mi->serial, r, why, resp);
            goto out;
        }
    }
    int supervised = profile_supervised(s, &d, why, sizeof why);
    if (supervised < 0) {
        http_refuse(resp, 503, 0, "ADE: %s", why);
        goto out;
    }
    unsigned char *der = NULL;
    size_t len = 0;
    int status = enroll_profile_make(w, mi->udid, 0, &der, &len, why, sizeof why);
    if (status != 0) {
        http_refuse(resp, status, 0, "ADE: cannot make the enrollment profile: %s", why);
        goto out;
    }
    if (remember_ade(s, mi, &d, supervised, why, sizeof why) != 0) {
        OPENSSL_free(der);
        http_refuse(resp, 503, 0, "ADE: %s", why);
        goto out;
    }
    log_info("ADE enrollment profile for serial %s udid=%s product=%s os=%s token=%s profile=%s%s%s%s", mi->serial,
             mi->udid, mi->product, mi->os_version ? mi->os_version : mi->version, d.token_name,
             d.profile_uuid ? d.profile_uuid : "-", supervised ? " supervised" : " unsupervised",
             *user ? " user=" : "", user);
    http_reply(resp, 200, PROFILE_CONTENT_TYPE, der, len);
    /* Each profile holds a one-time challenge: no cache may keep it. */
    http_add_header(resp, "Cache-Control", "no-store");
    OPENSSL_free(der);
out:
    ade_device_free(&d);
}

void ade_enroll_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    const app_t *app = w->app;
    HTTP_LOG(resp, log_type, "ADEMachineInfo");
    if (req->method != HTTP_M_POST) {
        http_refuse(resp, 405, 0, "%s is not allowed on /enroll/ade: devices POST their signed MachineInfo",
                    req->method_name);
        http_add_header(resp, "Allow", "POST");
        return;
    }
    if (!app->machineinfo_verifier) {
        http_refuse(resp, 403, 0, "ADE enrollment by MachineInfo is not configured (--machineinfo-ca)");
        return;
    }
    /* HTTP clients that know a URL wants authentication (libcurl's Digest)
     * probe it with an empty body first, to send the body only once; devices
     * always send their MachineInfo. The probe gets the challenge. */
    if (app->ade_digest && req->body_len == 0 && !http_header(req, "Authorization")) {
        challenge(w, "- (request without MachineInfo)", DIGEST_MISSING, "", resp);
        return;
    }
    machineinfo_t mi;
    char why[256];
    machineinfo_result_t r =
        machineinfo_verify_and_parse(app->machineinfo_verifier, req->body, req->body_len, &mi, why, sizeof why);
    if (r != MACHINEINFO_OK) {
        http_refuse(resp, r == MACHINEINFO_UNTRUSTED ? 403 : 400, 0, "ADE enrollment: %s", why);
        return;
    }
    HTTP_LOG(resp, log_id, mi.udid);
    if (enroll_identity_ok(w, "/enroll/ade", mi.udid, resp))
        enroll(w, req, &mi, resp);
    machineinfo_free(&mi);
}

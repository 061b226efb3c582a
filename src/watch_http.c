/* Apple Watch enrollment at /enroll/watch (the EnrollmentProfileURL of the
 * com.apple.configuration.watch.enrollment declaration).
 *
 *   POST, MachineInfo without PAIRING_TOKEN
 *       → 403 application/json {"code":"com.apple.watch.pairing.token.missing",
 *         ..., "details":{"security-token":"<UUID>"}}; the security token is
 *         stored bound to the watch UDID for --watch-token-ttl seconds.
 *   POST, MachineInfo with PAIRING_TOKEN (minted by GetToken, pairing.h)
 *       → the watch enrollment profile (application/x-apple-aspen-config)
 *         with a one-time SCEP challenge bound to the watch UDID; the
 *         security token is spent and the watch pairing recorded.
 *
 * Every refusal names its reason in the log line; nothing is stored for a
 * refused request. Challenges and tokens never reach the log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "app.h"
#include "enroll_http.h"
#include "log.h"
#include "machineinfo.h"
#include "pairing.h"
#include "profile.h"
#include "util.h"
#include "watch.h"

#define PAIRING_TOKEN_MISSING "com.apple.watch.pairing.token.missing"

static void refuse_token_missing(worker_t *w, const machineinfo_t *mi, http_response_t *resp)
{
    store_t *s = w->store;
    if (!s->ops->pairing_add) {
        http_refuse(resp, 503, 0, "watch enrollment: this storage backend cannot keep security tokens");
        return;
    }
    char token[37];
    if (util_uuid4(token) != 0) {
        http_refuse(resp, 503, 0, "watch enrollment: no randomness for a security token");
        return;
    }
    /* Apple's example and text: "a random UUID string" (upper case). */
    for (char *c = token; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    int64_t now = util_now();
    int rc = s->ops->pairing_add(s, token, mi->udid, now + w->app->cfg->watch_token_ttl, now);
    if (rc != STORE_OK) {
        http_refuse(resp, 503, 0, "watch enrollment: storage error saving a security token: %s",
                    rc == STORE_CONFLICT ? "duplicate token" : s->ops->errmsg(s));
        return;
    }
    const char *org = w->app->cfg->org_name ? w->app->cfg->org_name : "orchard";
    char message[256];
    snprintf(message, sizeof message, "This Apple Watch is being enrolled in %s's device management.", org);
    http_reply_json(resp, 403,
                    json_pack("{s:s,s:s,s:s,s:{s:s}}", "code", PAIRING_TOKEN_MISSING, "description",
                              "pairing token required: ask the paired iPhone's MDM server (GetToken)", "message",
                              message, "details", "security-token", token));
    snprintf(resp->log_problem, sizeof resp->log_problem,
             "watch MachineInfo without PAIRING_TOKEN: security token issued (%s, valid %ld s)",
             PAIRING_TOKEN_MISSING, w->app->cfg->watch_token_ttl);
}

/* The signed watch profile; a one-time challenge bound to the watch UDID. */
static int watch_profile(worker_t *w, const char *udid, unsigned char **der, size_t *len, char *err, size_t errlen)
{
    const app_t *app = w->app;
    if (!app->push_topic) {
        util_set_err(err, errlen, "no push topic: import a push certificate or set --push-topic");
        return 503;
    }
    if (!app->tls_cert || !app->tls_key) {
        util_set_err(err, errlen, "no profile-signing identity loaded");
        return 503;
    }
    char challenge[65] = "";
    int status = enroll_challenge_new(w, udid, challenge, err, errlen);
    if (status != 0)
        return status;
    profile_opts_t o;
    profile_opts_init(&o);
    o.public_url = app->cfg->public_url;
    o.topic = app->push_topic;
    o.org_name = app->cfg->org_name;
    o.anchors = app->anchors;
    o.subject_cn = udid;
    o.scep_challenge = challenge;
    o.watch = 1;
    if (profile_generate(&o, app->tls_cert, app->tls_key, app->anchors, der, len, err, errlen) != 0)
        status = 503;
    OPENSSL_cleanse(challenge, sizeof challenge);
    return status;
}

static void enroll_with_token(worker_t *w, const machineinfo_t *mi, http_response_t *resp)
{
    store_t *s = w->store;
    const app_t *app = w->app;
    char why[300];
    pairing_claims_t c;
    int64_t now = util_now();
    pairing_result_t r = pairing_token_verify(app->pairing_key, mi->pairing_token, mi->pairing_token_len,
                                              app->org_id, now, &c, why, sizeof why);
    if (r != PAIRING_OK) {
        http_refuse(resp, 403, 0, "watch %.100s: %s", mi->udid, why);
        return;
    }
    if (strcmp(c.watch_udid, mi->udid) != 0) {
        http_refuse(resp, 403, 0, "watch %.100s: pairing token is for another watch (%.100s)", mi->udid,
                    c.watch_udid);
        goto out;
    }
    if (!s->ops->pairing_get || !s->ops->pairing_consume || !s->ops->watch_pair) {
        http_refuse(resp, 503, 0, "watch enrollment: this storage backend cannot keep watch pairings");
        goto out;
    }
    pairing_token_t pt;
    int rc = s->ops->pairing_get(s, c.security_token, &pt);
    if (rc == STORE_ERR) {
        http_refuse(resp, 503, 0, "storage error: %s", s->ops->errmsg(s));
        goto out;
    }
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 403, 0, "watch %.100s: the pairing token's security token was never issued", mi->udid);
        goto out;
    }
    const char *problem = NULL;
    if (strcmp(pt.watch_udid, mi->udid) != 0)
        problem = "was issued to another watch";
    else if (pt.used_at)
        problem = "was already used (replayed pairing token)";
    else if (!pt.phone_udid || strcmp(pt.phone_udid, c.phone_udid) != 0)
        problem = "is not bound to the phone the pairing token names";
    else if (pt.expires_at <= now)
        problem = "has expired";
    pairing_token_free(&pt);
    if (problem) {
        http_refuse(resp, 403, 0, "watch %.100s: security token %s", mi->udid, problem);
        goto out;
    }
    /* The phone must still be enrolled and active now, not just when it
     * asked for the token. */
    int code = watch_phone_eligible(s, c.phone_udid, 0, why, sizeof why);
    if (code != 200) {
        http_refuse(resp, code, 0, "watch %.100s: %s", mi->udid, why);
        goto out;
    }
    unsigned char *der = NULL;
    size_t len = 0;
    code = watch_profile(w, mi->udid, &der, &len, why, sizeof why);
    if (code != 0) {
        http_refuse(resp, code, 0, "watch %.100s: cannot make the enrollment profile: %s", mi->udid, why);
        goto out;
    }
    /* Spend the security token only once the profile exists: a storage
     * hiccup above leaves the watch able to retry with the same token. */
    rc = s->ops->pairing_consume(s, c.security_token, mi->udid, now);
    if (rc != STORE_OK) {
        OPENSSL_free(der);
        if (rc == STORE_NOTFOUND)
            http_refuse(resp, 403, 0, "watch %.100s: security token was already used (replayed pairing token)",
                        mi->udid);
        else
            http_refuse(resp, 503, 0, "storage error: %s", s->ops->errmsg(s));
        goto out;
    }
    if (s->ops->watch_pair(s, mi->udid, c.phone_udid, now) != STORE_OK) {
        OPENSSL_free(der);
        http_refuse(resp, 503, 0, "storage error recording the watch pairing: %s", s->ops->errmsg(s));
        goto out;
    }
    log_info("watch enrollment profile for watch %s (serial %s, %s %s) paired with phone %s", mi->udid, mi->serial,
             mi->product, mi->os_version ? mi->os_version : mi->version, c.phone_udid);
    http_reply(resp, 200, PROFILE_CONTENT_TYPE, der, len);
    http_add_header(resp, "Cache-Control", "no-store");
    OPENSSL_free(der);
out:
    pairing_claims_free(&c);
}

void watch_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    const app_t *app = w->app;
    HTTP_LOG(resp, log_type, "WatchMachineInfo");
    if (req->method != HTTP_M_POST) {
        http_refuse(resp, 405, 0, "%s is not allowed on /enroll/watch: a watch POSTs its signed MachineInfo",
                    req->method_name);
        http_add_header(resp, "Allow", "POST");
        return;
    }
    if (!app->machineinfo_verifier) {
        http_refuse(resp, 403, 0, "watch enrollment by MachineInfo is not configured (--machineinfo-ca)");
        return;
    }
    machineinfo_t mi;
    char why[256];
    machineinfo_result_t r =
        machineinfo_verify_and_parse(app->machineinfo_verifier, req->body, req->body_len, &mi, why, sizeof why);
    if (r != MACHINEINFO_OK) {
        http_refuse(resp, r == MACHINEINFO_UNTRUSTED ? 403 : 400, 0, "watch enrollment: %s", why);
        return;
    }
    HTTP_LOG(resp, log_id, mi.udid);
    if (!enroll_identity_ok(w, "/enroll/watch", mi.udid, resp)) {
        machineinfo_free(&mi);
        return;
    }
    if (!mi.pairing_token || mi.pairing_token_len == 0)
        refuse_token_missing(w, &mi, resp);
    else
        enroll_with_token(w, &mi, resp);
    machineinfo_free(&mi);
}

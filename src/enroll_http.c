/* OTA enrollment at /enroll.
 *
 *   GET  /enroll   the signed enrollment profile, for a person with the
 *                  enrollment secret (?secret= or HTTP Basic password, any
 *                  user name). Each profile carries a fresh one-time SCEP
 *                  challenge unless a static one is configured.
 *                  ?identity=pkcs12 embeds a PKCS#12 identity issued by the
 *                  CA instead of a SCEP payload.
 *   POST /enroll   a device's CMS-signed MachineInfo (machineinfo.c): signer
 *                  trusted through --machineinfo-ca, admission policy
 *                  applied, then a profile whose one-time challenge is bound
 *                  to the device's UDID and whose SCEP subject CN is that
 *                  UDID.
 *
 * Profiles are answered as application/x-apple-aspen-config, never cached.
 * Secrets (the enrollment secret, challenges, PKCS#12 passwords) never
 * reach the log.
 */
#include "enroll_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "log.h"
#include "machineinfo.h"
#include "pki.h"
#include "profile.h"
#include "util.h"

/* ---- shared with the renewal API ------------------------------------------- */

int enroll_challenge_new(worker_t *w, const char *udid, char out[65], char *err, size_t errlen)
{
    store_t *s = w->store;
    if (!s->ops->challenge_add) {
        snprintf(err, errlen, "this storage backend cannot keep one-time SCEP challenges");
        return 503;
    }
    if (util_random_hex(out, 16) != 0) {
        snprintf(err, errlen, "no randomness for a SCEP challenge");
        return 503;
    }
    int64_t now = util_now();
    if (s->ops->challenge_add(s, out, udid, now + ENROLL_CHALLENGE_TTL, now) != STORE_OK) {
        OPENSSL_cleanse(out, 65);
        snprintf(err, errlen, "storage error saving a SCEP challenge: %s", s->ops->errmsg(s));
        return 503;
    }
    return 0;
}

static int64_t asn1_time_unix(const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* Records a certificate orchard issued (same shape as SCEP's records): the
 * serial as lower-case hex of its magnitude, RFC 2253 subject, SHA-256. */
static int record_issued(store_t *s, X509 *cert, const char *enrollment_id, char *err, size_t errlen)
{
    if (!s->ops->cert_add) {
        snprintf(err, errlen, "this storage backend cannot record issued certificates");
        return -1;
    }
    char serial[2 * 64 + 1] = "", sha[65], subject[512] = "";
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    unsigned char mag[64];
    int n = bn && BN_num_bytes(bn) <= (int)sizeof mag ? BN_bn2bin(bn, mag) : -1;
    BN_free(bn);
    if (n == 0) {
        snprintf(serial, sizeof serial, "00");
    } else if (n > 0) {
        util_hex(mag, (size_t)n, serial);
    }
    BIO *b = BIO_new(BIO_s_mem());
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        int m = BIO_read(b, subject, (int)sizeof subject - 1);
        subject[m > 0 ? m : 0] = '\0';
    }
    BIO_free(b);
    ERR_clear_error();
    if (n < 0 || pki_cert_sha256_hex(cert, sha) != 0) {
        snprintf(err, errlen, "cannot read the issued certificate");
        return -1;
    }
    int64_t now = util_now();
    issued_cert_t rec = {
        .serial = serial,
        .subject = subject,
        .enrollment_id = (char *)enrollment_id,
        .sha256 = sha,
        .not_before = asn1_time_unix(X509_get0_notBefore(cert)),
        .not_after = asn1_time_unix(X509_get0_notAfter(cert)),
        .issued_at = now,
        .revoked_at = 0,
    };
    if (s->ops->cert_add(s, &rec) != STORE_OK) {
        snprintf(err, errlen, "storage error recording the issued certificate: %s", s->ops->errmsg(s));
        return -1;
    }
    log_info("issued certificate serial=%s subject=\"%s\" device=%s via=pkcs12-profile", serial, subject,
             enrollment_id ? enrollment_id : "-");
    return 0;
}

int enroll_profile_make(worker_t *w, const char *udid, int pkcs12, unsigned char **out, size_t *outlen, char *err,
                        size_t errlen)
{
    const app_t *app = w->app;
    const config_t *cfg = app->cfg;
    *out = NULL;
    *outlen = 0;
    if (!app->push_topic) {
        snprintf(err, errlen, "no push topic: import a push certificate (orchard pushcert import) or set --push-topic");
        return 503;
    }
    if (!app->tls_cert || !app->tls_key) {
        snprintf(err, errlen, "no profile-signing identity loaded");
        return 503;
    }
    profile_opts_t o;
    profile_opts_init(&o);
    o.public_url = cfg->public_url;
    o.topic = app->push_topic;
    o.org_name = cfg->org_name;
    o.anchors = app->anchors;
    o.subject_cn = udid;

    char challenge[65] = "", password[33] = "";
    unsigned char *p12 = NULL;
    size_t p12_len = 0;
    int status = 0;
    if (pkcs12) {
        char cn[64];
        X509 *cert = NULL;
        if (!udid) {
            char hex[33];
            if (util_random_hex(hex, 16) != 0) {
                snprintf(err, errlen, "no randomness for a subject name");
                return 503;
            }
            snprintf(cn, sizeof cn, "orchard-device-%s", hex);
        }
        int days = cfg->cert_days > 0 ? cfg->cert_days : 365;
        if (profile_issue_pkcs12(app->ca_cert, app->ca_key, udid ? udid : cn, days, &p12, &p12_len, password, &cert,
                                 err, errlen) != 0)
            return 503;
        int rec = record_issued(w->store, cert, udid, err, errlen);
        X509_free(cert);
        if (rec != 0) {
            status = 503;
            goto out;
        }
        o.pkcs12 = p12;
        o.pkcs12_len = p12_len;
        o.pkcs12_password = password;
    } else if (!udid && cfg->scep_challenge) {
        o.scep_challenge = cfg->scep_challenge;
    } else {
        if ((status = enroll_challenge_new(w, udid, challenge, err, errlen)) != 0)
            goto out;
        o.scep_challenge = challenge;
    }
    if (profile_generate(&o, app->tls_cert, app->tls_key, app->anchors, out, outlen, err, errlen) != 0)
        status = 503;
out:
    OPENSSL_cleanse(challenge, sizeof challenge);
    OPENSSL_cleanse(password, sizeof password);
    if (p12) {
        OPENSSL_cleanse(p12, p12_len);
        free(p12);
    }
    return status;
}

/* ---- GET /enroll -------------------------------------------------------------- */

/* The enrollment secret from ?secret= or an HTTP Basic password. Returns 1
 * if it matches, 0 if wrong, -1 if none was given. */
static int check_secret(const app_t *app, const http_request_t *req)
{
    char buf[1024];
    const char *given = http_query(req, "secret", buf, sizeof buf);
    int result = -1;
    if (given) {
        /* A value that filled the buffer may have been cut: never a match. */
        result = strlen(given) < sizeof buf - 1 && util_secure_streq(given, app->enroll_secret);
    } else {
        const char *h = http_header(req, "Authorization");
        if (h && strncasecmp(h, "Basic ", 6) == 0) {
            size_t n = 0;
            unsigned char *dec = util_base64_decode(h + 6, strlen(h + 6), &n);
            char *colon = dec ? memchr(dec, ':', n) : NULL;
            result = 0;
            if (colon) {
                const char *pass = colon + 1;
                size_t plen = n - (size_t)(pass - (char *)dec);
                /* dec is NUL-terminated; a NUL inside the password is no match. */
                result = strlen(pass) == plen && util_secure_streq(pass, app->enroll_secret);
            }
            if (dec) {
                OPENSSL_cleanse(dec, n);
                free(dec);
            }
        } else if (h) {
            result = 0;
        }
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return result;
}

static void reply_profile(http_response_t *resp, const unsigned char *der, size_t len)
{
    http_reply(resp, 200, PROFILE_CONTENT_TYPE, der, len);
    /* Each profile holds a one-time challenge: no cache may keep it. */
    http_add_header(resp, "Cache-Control", "no-store");
    http_add_header(resp, "Content-Disposition", "attachment; filename=\"orchard.mobileconfig\"");
}

static void enroll_get(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    const app_t *app = w->app;
    HTTP_LOG(resp, log_type, "profile");
    if (!app->enroll_secret || !*app->enroll_secret) {
        http_refuse(resp, 403, 0, "enrollment by secret is not configured");
        return;
    }
    int ok = check_secret(app, req);
    if (ok != 1) {
        http_add_header(resp, "WWW-Authenticate", "Basic realm=\"orchard enrollment\"");
        http_refuse(resp, 401, 0, "enrollment secret %s", ok < 0 ? "missing (use ?secret= or HTTP Basic)" : "wrong");
        return;
    }
    char ident[16];
    int pkcs12 = 0;
    if (http_query(req, "identity", ident, sizeof ident)) {
        if (strcmp(ident, "pkcs12") == 0)
            pkcs12 = 1;
        else if (strcmp(ident, "scep") != 0) {
            http_refuse(resp, 400, 0, "identity must be scep or pkcs12");
            return;
        }
    }
    if (pkcs12)
        HTTP_LOG(resp, log_type, "profile-pkcs12");
    unsigned char *der = NULL;
    size_t len = 0;
    char why[256];
    int status = enroll_profile_make(w, NULL, pkcs12, &der, &len, why, sizeof why);
    if (status != 0) {
        http_refuse(resp, status, 0, "cannot make the enrollment profile: %s", why);
        return;
    }
    reply_profile(resp, der, len);
    OPENSSL_free(der);
}

/* ---- POST /enroll ------------------------------------------------------------- */

/* Apple's documented 403 body for a device the server does not know
 * (mdm/errors/unrecognized.device.yaml): code, description (logged by the
 * device), message (may be shown to the user). */
static void refuse_unrecognized(worker_t *w, const machineinfo_t *mi, http_response_t *resp)
{
    const char *org = w->app->cfg->org_name ? w->app->cfg->org_name : "orchard";
    char message[256];
    snprintf(message, sizeof message, "This device is not registered for enrollment with %s.", org);
    http_reply_json(resp, 403,
                    json_pack("{s:s,s:s,s:s}", "code", "com.apple.unrecognized.device", "description",
                              "device is not on the admission list", "message", message));
    snprintf(resp->log_problem, sizeof resp->log_problem,
             "admission: serial %.64s / UDID %.100s is not on the known-devices list", mi->serial, mi->udid);
}

static void enroll_post(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    const app_t *app = w->app;
    store_t *s = w->store;
    HTTP_LOG(resp, log_type, "MachineInfo");
    if (!app->machineinfo_verifier) {
        http_refuse(resp, 403, 0, "enrollment by MachineInfo is not configured (--machineinfo-ca)");
        return;
    }
    machineinfo_t mi;
    char why[256];
    machineinfo_result_t r =
        machineinfo_verify_and_parse(app->machineinfo_verifier, req->body, req->body_len, &mi, why, sizeof why);
    if (r != MACHINEINFO_OK) {
        http_refuse(resp, r == MACHINEINFO_UNTRUSTED ? 403 : 400, 0, "%s", why);
        return;
    }
    HTTP_LOG(resp, log_id, mi.udid);
    if (!enroll_identity_ok(w, "/enroll", mi.udid, resp)) {
        machineinfo_free(&mi);
        return;
    }
    if (app->cfg->admission_known) {
        int rc = s->ops->device_allowed ? s->ops->device_allowed(s, mi.udid, mi.serial) : STORE_ERR;
        if (rc == STORE_NOTFOUND) {
            refuse_unrecognized(w, &mi, resp);
            goto out;
        }
        if (rc != STORE_OK) {
            http_refuse(resp, 503, 0, "storage error checking admission: %s",
                        s->ops->device_allowed ? s->ops->errmsg(s) : "backend has no admission list");
            goto out;
        }
    }
    unsigned char *der = NULL;
    size_t len = 0;
    int status = enroll_profile_make(w, mi.udid, 0, &der, &len, why, sizeof why);
    if (status != 0) {
        http_refuse(resp, status, 0, "cannot make the enrollment profile: %s", why);
        goto out;
    }
    log_info("enrollment profile for MachineInfo udid=%s serial=%s product=%s version=%s", mi.udid, mi.serial,
             mi.product, mi.version);
    reply_profile(resp, der, len);
    OPENSSL_free(der);
out:
    machineinfo_free(&mi);
}

void enroll_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    if (req->method == HTTP_M_GET) {
        enroll_get(w, req, resp);
    } else if (req->method == HTTP_M_POST) {
        enroll_post(w, req, resp);
    } else {
        http_refuse(resp, 405, 0, "%s is not allowed on /enroll: GET a profile or POST a signed MachineInfo",
                    req->method_name);
        http_add_header(resp, "Allow", "GET, POST");
    }
}

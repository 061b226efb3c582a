/* APNs request building, response classification and push credentials
 * (see apns.h). */
#include "apns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "pushcert.h"
#include "util.h"

/* ---- credentials ------------------------------------------------------------ */

void apns_cred_clear(apns_cred_t *c)
{
    if (!c)
        return;
    free(c->topic);
    free(c->cert_pem);
    if (c->key_pem) {
        OPENSSL_cleanse(c->key_pem, c->key_len);
        free(c->key_pem);
    }
    memset(c, 0, sizeof *c);
}

int apns_cred_load(const char *cert_path, const char *key_path, apns_cred_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    BIO *b = NULL;
    char *why = NULL;
    pushcert_info_t info;
    memset(&info, 0, sizeof info);
    int rc = -1;

    if (!(out->cert_pem = util_read_file(cert_path, PUSHCERT_MAX_FILE, &out->cert_len))) {
        util_set_err(err, errlen, "cannot read the push certificate %s", cert_path);
        goto out;
    }
    if (!(out->key_pem = util_read_file(key_path, PUSHCERT_MAX_FILE, &out->key_len))) {
        util_set_err(err, errlen, "cannot read the push certificate's key %s", key_path);
        goto out;
    }
    if (!(b = BIO_new_mem_buf(out->cert_pem, (int)out->cert_len)) ||
        !(cert = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        util_set_err(err, errlen, "%s is not a PEM certificate", cert_path);
        goto out;
    }
    BIO_free(b);
    /* No password callback: an encrypted key fails here instead of
     * prompting on a server's terminal. */
    if (!(b = BIO_new_mem_buf(out->key_pem, (int)out->key_len)) ||
        !(key = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)""))) {
        util_set_err(err, errlen, "%s is not an unencrypted PEM private key", key_path);
        goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        util_set_err(err, errlen, "the key %s does not belong to the push certificate %s", key_path, cert_path);
        goto out;
    }
    if (pushcert_inspect(cert, util_now(), &info, &why) != 0) {
        util_set_err(err, errlen, "%s: %s", cert_path, why ? why : "not an MDM push certificate");
        goto out;
    }
    out->topic = info.topic;
    info.topic = NULL;
    out->not_after = info.not_after_unix;
    snprintf(out->not_after_text, sizeof out->not_after_text, "%s", info.not_after ? info.not_after : "?");
    rc = 0;
out:
    ERR_clear_error();
    free(why);
    pushcert_info_clear(&info);
    BIO_free(b);
    X509_free(cert);
    EVP_PKEY_free(key);
    if (rc != 0)
        apns_cred_clear(out);
    return rc;
}

/* ---- request ------------------------------------------------------------------ */

int apns_path(const unsigned char *token, size_t len, char *out, size_t outlen)
{
    static const char prefix[] = "/3/device/";
    if (!token || len == 0 || len > APNS_TOKEN_MAX || outlen < sizeof prefix + 2 * len)
        return -1;
    memcpy(out, prefix, sizeof prefix - 1);
    util_hex(token, len, out + sizeof prefix - 1);
    return 0;
}

int apns_mdm_body(const char *magic, char *out, size_t outlen)
{
    if (!magic || strlen(magic) > APNS_MAGIC_MAX)
        return -1;
    size_t n = 0;
#define PUT(c)                                                                                                       \
    do {                                                                                                             \
        if (n + 1 >= outlen)                                                                                         \
            return -1;                                                                                               \
        out[n++] = (c);                                                                                              \
    } while (0)
    for (const char *p = "{\"mdm\":\""; *p; p++)
        PUT(*p);
    for (const unsigned char *p = (const unsigned char *)magic; *p; p++) {
        if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT((char)*p);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            for (char *e = esc; *e; e++)
                PUT(*e);
        } else {
            PUT((char)*p); /* UTF-8 passes through as is */
        }
    }
    PUT('"');
    PUT('}');
#undef PUT
    out[n] = '\0';
    return (int)n;
}

/* ---- response ------------------------------------------------------------------ */

static void copy_printable(const char *in, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < outlen; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c > 0x20 && c < 0x7f)
            out[n++] = (char)c;
    }
    out[n] = '\0';
}

/* The "reason" member of a JSON object body, sanitized; "" if none. */
static void body_reason(const char *body, size_t len, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!body || len == 0)
        return;
    json_error_t jerr;
    /* The body is bounded by the caller; depth is capped by jansson itself. */
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *r = json_is_object(j) ? json_string_value(json_object_get(j, "reason")) : NULL;
    if (r)
        copy_printable(r, strlen(r), out, outlen);
    json_decref(j);
}

/* Reasons (Apple's provider API) that say the certificate or its topic is
 * not acceptable, rather than this one push. */
static int cert_reason(const char *reason)
{
    static const char *const list[] = {"BadCertificate",      "BadCertificateEnvironment", "ExpiredProviderToken",
                                       "Forbidden",           "InvalidProviderToken",      "MissingProviderToken",
                                       "TopicDisallowed",     "BadTopic",                  "MissingTopic",
                                       "ExpiredToken"};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (strcmp(reason, list[i]) == 0)
            return 1;
    return 0;
}

void apns_classify_http(long status, const char *body, size_t len, apns_result_t *r)
{
    memset(r, 0, sizeof *r);
    body_reason(body, len, r->reason, sizeof r->reason);
    const char *reason = r->reason[0] ? r->reason : "no reason given";
    if (status == 200) {
        r->outcome = APNS_OK;
        return;
    }
    if (status == 410 || (status == 400 && strcmp(r->reason, "BadDeviceToken") == 0)) {
        r->outcome = APNS_TOKEN_INVALID;
        snprintf(r->error, sizeof r->error, "APNs %ld %s: the push token is no longer valid; waiting for a new "
                                            "TokenUpdate", status, reason);
    } else if (status == 429 || (status >= 500 && status <= 599)) {
        r->outcome = APNS_RETRY;
        snprintf(r->error, sizeof r->error, "APNs %ld %s", status, reason);
    } else if (status == 403 || (status == 400 && cert_reason(r->reason))) {
        r->outcome = APNS_CERT_REJECTED;
        snprintf(r->error, sizeof r->error, "APNs %ld %s: the push certificate or its topic was refused", status,
                 reason);
    } else {
        r->outcome = APNS_FAILED;
        snprintf(r->error, sizeof r->error, "APNs %ld %s", status, reason);
    }
}

void apns_classify_transport(int tls, const char *detail, apns_result_t *r)
{
    memset(r, 0, sizeof *r);
    char d[320];
    d[0] = '\0';
    if (detail) {
        /* Keep spaces here (a message, not a token) but nothing unprintable. */
        size_t n = 0;
        for (const char *p = detail; *p && n + 1 < sizeof d; p++)
            d[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
        d[n] = '\0';
    }
    /* A TLS alert from the server about certificates means it refused ours
     * (unknown CA, revoked, expired); other TLS trouble may be the network. */
    if (tls && (strcasestr(d, "alert") && (strcasestr(d, "certificate") || strcasestr(d, "unknown ca")))) {
        r->outcome = APNS_CERT_REJECTED;
        snprintf(r->error, sizeof r->error, "APNs refused the push certificate during the TLS handshake (%.180s)", d);
        return;
    }
    r->outcome = APNS_RETRY;
    snprintf(r->error, sizeof r->error, "no answer from APNs: %.220s", d[0] ? d : "connection failed");
}

void apns_copy_id(const char *value, size_t len, char *out, size_t outlen)
{
    out[0] = '\0';
    while (len && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    while (len && (value[len - 1] == '\r' || value[len - 1] == '\n' || value[len - 1] == ' '))
        len--;
    if (len == 0 || len >= outlen || len > 64)
        return;
    for (size_t i = 0; i < len; i++)
        if (value[i] <= 0x20 || value[i] >= 0x7f)
            return;
    memcpy(out, value, len);
    out[len] = '\0';
}

/* SCEP endpoint (RFC 8894) at /scep: GetCACaps, GetCACert and PKIOperation
 * (POST with a binary body, or GET with message=base64).
 *
 * The protocol work is in scep.c. This file applies orchard's policy
 * between parsing a request and answering it:
 *   PKCSReq    the CSR's challengePassword is the static --scep-challenge
 *              (constant-time compare) or an unused one-time challenge
 *              (consumed here; when bound to a device, the CSR's CN must be
 *              that device's id, and the id goes on the record);
 *   RenewalReq the signer is a current certificate of orchard's CA that
 *              orchard issued and did not revoke; no challenge needed;
 * then issues, records the certificate (store cert_add) and answers.
 *
 * Answers: a SCEP message that can be parsed always gets a signed CertRep
 * with HTTP 200 (FAILURE + failInfo when refused, as SCEP clients expect);
 * garbage gets HTTP 400; storage trouble 503 so the client retries rather
 * than giving up on a final FAILURE. Every refusal names its reason in the
 * request log line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "app.h"
#include "log.h"
#include "pki.h"
#include "scep.h"
#include "util.h"

#define PKI_MESSAGE_TYPE "application/x-pki-message"
#define MAX_GET_MESSAGE (64 * 1024)

/* What orchard implements; one capability per line (RFC 8894 s3.5.2). */
static const char caps[] = "POSTPKIOperation\nSHA-256\nSHA-512\nAES\nSCEPStandard\nRenewal\n";

/* Client-chosen text (operation, CN) for the log line: anything but a
 * conservative character set becomes '_', so a field cannot fake others. */
static void log_safe(char *field, size_t size, const char *value)
{
    size_t i = 0;
    for (; value && value[i] && i + 1 < size; i++) {
        unsigned char c = (unsigned char)value[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._:@", c);
        field[i] = ok ? (char)c : '_';
    }
    field[i] = '\0';
}

static void storage_failed(worker_t *w, http_response_t *resp, const char *doing)
{
    http_refuse(resp, 503, 0, "SCEP: storage error %s: %s", doing, w->store->ops->errmsg(w->store));
}

/* ---- GetCACaps / GetCACert ------------------------------------------------ */

static void get_ca_caps(http_response_t *resp)
{
    http_reply(resp, 200, "text/plain", caps, sizeof caps - 1);
}

static void get_ca_cert(worker_t *w, http_response_t *resp)
{
    unsigned char *der = NULL;
    int n = i2d_X509(w->app->ca_cert, &der);
    if (n <= 0) {
        http_refuse(resp, 500, 0, "SCEP: cannot encode the CA certificate");
        return;
    }
    /* One certificate (no RA): the CA itself signs and decrypts. */
    http_reply(resp, 200, "application/x-x509-ca-cert", der, (size_t)n);
    OPENSSL_free(der);
}

/* ---- GET message ------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The message= parameter of a GET PKIOperation, decoded. Read from the raw
 * query rather than with http_query: form decoding would turn base64's '+'
 * (often sent unescaped) into a space, and the value may be large. The
 * base64url alphabet ('-', '_', no padding) is accepted as well: some
 * clients send it. NULL with *status 400 (malformed/absent) or 414 (over
 * MAX_GET_MESSAGE). */
static unsigned char *get_message(const char *query, size_t *len, int *status, char *why, size_t whylen)
{
    *status = 400;
    const char *v = NULL;
    for (const char *p = query; p && *p;) {
        size_t seg = strcspn(p, "&");
        if (seg >= 8 && strncmp(p, "message=", 8) == 0) {
            v = p + 8;
            break;
        }
        p += seg;
        if (*p == '&')
            p++;
    }
    if (!v) {
        snprintf(why, whylen, "GET PKIOperation without a message parameter");
        return NULL;
    }
    size_t raw = strcspn(v, "&");
    /* Worst case for 64 KiB: base64 (4/3) with every character escaped (3x). */
    if (raw > (size_t)MAX_GET_MESSAGE / 3 * 4 * 3 + 64) {
        *status = 414;
        snprintf(why, whylen, "GET PKIOperation message over %d KiB", MAX_GET_MESSAGE / 1024);
        return NULL;
    }
    char *b64 = malloc(raw + 4);
    if (!b64) {
        *status = 500;
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < raw; i++) {
        char c = v[i];
        if (c == '%') {
            int hi = i + 2 < raw ? hexval(v[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(v[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(b64);
                snprintf(why, whylen, "GET PKIOperation message has a broken %%-escape");
                return NULL;
            }
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        b64[n++] = c;
    }
    size_t symbols = 0, padded = 0;
    for (size_t i = 0; i < n; i++) {
        symbols += b64[i] != ' ' && b64[i] != '\n' && b64[i] != '\r' && b64[i] != '\t';
        padded |= b64[i] == '=';
    }
    while (!padded && symbols % 4 != 0 && n < raw + 3) {
        b64[n++] = '=';
        symbols++;
    }
    unsigned char *der = util_base64_decode(b64, n, len);
    free(b64);
    if (!der) {
        snprintf(why, whylen, "GET PKIOperation message is not base64");
        return NULL;
    }
    if (*len == 0 || *len > MAX_GET_MESSAGE) {
        *status = *len ? 414 : 400;
        snprintf(why, whylen, *len ? "GET PKIOperation message over 64 KiB" : "GET PKIOperation message is empty");
        free(der);
        return NULL;
    }
    return der;
}

/* ---- PKIOperation policy ------------------------------------------------------ */

/* Signed FAILURE answer (HTTP 200, as SCEP clients expect). */
static void answer_failure(worker_t *w, const scep_request_t *r, scep_fail_t fail, const char *why,
                           http_response_t *resp)
{
    unsigned char *der = NULL;
    size_t len = 0;
    if (scep_certrep_failure(r, w->app->ca_cert, w->app->ca_key, fail, &der, &len) != 0) {
        http_refuse(resp, 500, 0, "SCEP %s refused (%s: %s), and the CertRep could not be signed",
                    scep_message_type_name(r->message_type), scep_fail_name(fail), why);
        return;
    }
    http_reply(resp, 200, PKI_MESSAGE_TYPE, der, len);
    OPENSSL_free(der);
    snprintf(resp->log_problem, sizeof resp->log_problem, "SCEP %s refused with %s: %s",
             scep_message_type_name(r->message_type), scep_fail_name(fail), why);
}

/* PKCSReq: 0 accepted (*enrollment_id set for a bound one-time challenge),
 * 1 refused (why), -1 storage failure. */
static int check_challenge(worker_t *w, const scep_request_t *r, char **enrollment_id, char *why, size_t whylen)
{
    *enrollment_id = NULL;
    if (!r->challenge || !r->challenge[0]) {
        snprintf(why, whylen, "PKCSReq without a challengePassword");
        return 1;
    }
    const char *fixed = w->app->cfg->scep_challenge;
    if (fixed && fixed[0] && util_secure_streq(r->challenge, fixed))
        return 0;
    store_t *s = w->store;
    int rc = s->ops->challenge_consume ? s->ops->challenge_consume(s, r->challenge, util_now(), enrollment_id)
                                       : STORE_NOTFOUND;
    if (rc == STORE_OK && *enrollment_id && strcmp(r->cn, *enrollment_id) != 0) {
        /* A challenge bound to a device (its profile asks for CN = UDID)
         * must not yield a certificate naming another one: Authenticate
         * lets a certificate that names a UDID re-bind that enrollment.
         * The challenge stays used: whoever sent this held it. */
        char bound[64], cn[64];
        log_safe(bound, sizeof bound, *enrollment_id);
        log_safe(cn, sizeof cn, r->cn);
        snprintf(why, whylen, "the one-time challenge was issued for %s but the CSR's CN is %s", bound, cn);
        free(*enrollment_id);
        *enrollment_id = NULL;
        return 1;
    }
    if (rc == STORE_OK)
        return 0;
    if (rc == STORE_NOTFOUND) {
        snprintf(why, whylen, "wrong challenge password (not the static challenge%s, nor an unused one-time challenge)",
                 fixed && fixed[0] ? "" : ", none is configured");
        return 1;
    }
    return -1;
}

/* RenewalReq: 0 accepted (*enrollment_id = the renewed certificate's),
 * 1 refused (*fail, why), -1 storage failure. */
static int check_renewal(worker_t *w, const scep_request_t *r, char **enrollment_id, scep_fail_t *fail, char *why,
                         size_t whylen)
{
    *enrollment_id = NULL;
    if (scep_check_renewal_signer(r, w->app->ca_cert, fail, why, whylen) != 0)
        return 1;
    char sha[65];
    if (pki_cert_sha256_hex(r->signer, sha) != 0) {
        *fail = SCEP_FAIL_BAD_REQUEST;
        snprintf(why, whylen, "cannot hash the RenewalReq signer certificate");
        return 1;
    }
    store_t *s = w->store;
    issued_cert_t old;
    int rc = s->ops->cert_by_sha256 ? s->ops->cert_by_sha256(s, sha, &old) : STORE_NOTFOUND;
    if (rc == STORE_ERR)
        return -1;
    /* A certificate of the CA that SCEP did not issue (e.g. made by hand
     * with the CA key) has no record to carry over: refused. */
    *fail = SCEP_FAIL_BAD_REQUEST;
    if (rc != STORE_OK) {
        snprintf(why, whylen, "RenewalReq signer is not a certificate orchard issued (sha256 %.16s...)", sha);
        return 1;
    }
    int revoked = old.revoked_at != 0;
    if (revoked)
        snprintf(why, whylen, "RenewalReq signer (serial %s) was revoked", old.serial ? old.serial : "?");
    else if (old.enrollment_id && !(*enrollment_id = strdup(old.enrollment_id)))
        rc = STORE_ERR;
    issued_cert_free(&old);
    if (rc == STORE_ERR) {
        snprintf(why, whylen, "out of memory");
        *fail = SCEP_FAIL_BAD_REQUEST;
        return 1;
    }
    return revoked ? 1 : 0;
}

/* Writes the issued-certificate record. STORE_* result. */
static int record_cert(worker_t *w, X509 *cert, const char *enrollment_id, char *serial, size_t serial_len)
{
    issued_cert_t c;
    memset(&c, 0, sizeof c);
    char sha[65];
    char *subject = scep_cert_subject(cert);
    if (!subject || scep_cert_serial_hex(cert, serial, serial_len) != 0 || pki_cert_sha256_hex(cert, sha) != 0 ||
        scep_cert_validity(cert, &c.not_before, &c.not_after) != 0) {
        free(subject);
        return STORE_ERR;
    }
    c.serial = serial;
    c.subject = subject;
    c.enrollment_id = (char *)enrollment_id;
    c.sha256 = sha;
    c.issued_at = util_now();
    store_t *s = w->store;
    int rc = s->ops->cert_add ? s->ops->cert_add(s, &c) : STORE_ERR;
    free(subject);
    return rc;
}

/* Hex SHA-256 of the certificate's public key. 0, or -1. */
static int signer_key_id(X509 *signer, char out[2 * SHA256_DIGEST_LENGTH + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    unsigned int n = 0;
    if (!signer || X509_pubkey_digest(signer, EVP_sha256(), md, &n) != 1 || n != SHA256_DIGEST_LENGTH)
        return -1;
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static void pki_operation(worker_t *w, const unsigned char *msg, size_t len, http_response_t *resp)
{
    const app_t *app = w->app;
    if (!app->ca_key) {
        /* Without the key nothing can be decrypted, issued or even signed
         * (a CertRep FAILURE needs the CA's signature too). */
        http_refuse(resp, 503, 0, "SCEP: the CA key is offline (no ca.key); certificates cannot be issued");
        return;
    }
    scep_request_t r;
    char why[256];
    int pr = scep_parse_request(msg, len, app->ca_cert, app->ca_key, &r, why, sizeof why);
    if (pr == SCEP_PARSE_MALFORMED) {
        http_refuse(resp, 400, 0, "SCEP PKIOperation: %s", why);
        scep_request_free(&r);
        return;
    }
    HTTP_LOG(resp, log_type, scep_message_type_name(r.message_type));
    char *enrollment_id = NULL;
    X509 *cert = NULL;
    if (pr == SCEP_PARSE_REFUSED) {
        answer_failure(w, &r, r.fail_info, why, resp);
        goto out;
    }
    log_safe(resp->log_id, sizeof resp->log_id, r.cn);
    /* The identity is the signer's key: the device's current identity for a
     * renewal, its request key for a first enrollment (whose self-signed
     * certificate a client may remake at will; the key it keeps). */
    char signer_key[2 * SHA256_DIGEST_LENGTH + 1];
    if (signer_key_id(r.signer, signer_key) == 0 && !enroll_identity_ok(w, "/scep", signer_key, resp))
        goto out;

    scep_fail_t fail = SCEP_FAIL_BAD_REQUEST;
    int rc = r.message_type == SCEP_MSG_PKCSREQ ? check_challenge(w, &r, &enrollment_id, why, sizeof why)
                                                : check_renewal(w, &r, &enrollment_id, &fail, why, sizeof why);
    if (rc < 0) {
        storage_failed(w, resp, r.message_type == SCEP_MSG_PKCSREQ ? "checking the challenge" : "looking up the signer");
        goto out;
    }
    if (rc > 0) {
        answer_failure(w, &r, fail, why, resp);
        goto out;
    }
    if (enrollment_id)
        log_safe(resp->log_id, sizeof resp->log_id, enrollment_id);

    if (!(cert = scep_issue_cert(r.csr, app->ca_cert, app->ca_key, app->cfg->cert_days))) {
        http_refuse(resp, 500, 0, "SCEP: issuing the certificate failed");
        goto out;
    }
    char serial[64];
    rc = record_cert(w, cert, enrollment_id, serial, sizeof serial);
    if (rc != STORE_OK) {
        /* Not handed out unless recorded: an unrecorded certificate could
         * never be listed, renewed or revoked. */
        if (rc == STORE_CONFLICT)
            http_refuse(resp, 500, 0, "SCEP: serial number collision recording the certificate");
        else
            storage_failed(w, resp, "recording the certificate");
        goto out;
    }
    unsigned char *der = NULL;
    size_t der_len = 0;
    if (scep_certrep_success(&r, app->ca_cert, app->ca_key, cert, &der, &der_len) != 0) {
        http_refuse(resp, 500, 0, "SCEP: building the CertRep failed (certificate %s was recorded)", serial);
        goto out;
    }
    http_reply(resp, 200, PKI_MESSAGE_TYPE, der, der_len);
    OPENSSL_free(der);
    log_info("scep: issued certificate serial=%s id=%s via=%s days=%d", serial, resp->log_id,
             r.message_type == SCEP_MSG_PKCSREQ ? (enrollment_id ? "one-time-challenge" : "challenge") : "renewal",
             app->cfg->cert_days);
out:
    X509_free(cert);
    free(enrollment_id);
    scep_request_free(&r);
}

/* ---- dispatch ------------------------------------------------------------------ */

void scep_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    char op[40];
    if (!http_query(req, "operation", op, sizeof op)) {
        http_refuse(resp, 400, 0, "SCEP: missing operation parameter");
        return;
    }
    log_safe(resp->log_type, sizeof resp->log_type, op);
    int get = req->method == HTTP_M_GET, post = req->method == HTTP_M_POST;
    if (strcmp(op, "PKIOperation") == 0) {
        if (post) {
            if (req->body_len == 0) {
                http_refuse(resp, 400, 0, "SCEP: POST PKIOperation with an empty body");
                return;
            }
            if (req->body_len > SCEP_MAX_MESSAGE) {
                http_refuse(resp, 413, 0, "SCEP: PKIOperation message over %d KiB", SCEP_MAX_MESSAGE / 1024);
                return;
            }
            pki_operation(w, req->body, req->body_len, resp);
        } else if (get) {
            char why[128];
            size_t len = 0;
            int status;
            unsigned char *msg = get_message(req->query, &len, &status, why, sizeof why);
            if (!msg) {
                http_refuse(resp, status, 0, "SCEP: %s", why);
                return;
            }
            pki_operation(w, msg, len, resp);
            free(msg);
        } else {
            http_refuse(resp, 405, 0, "SCEP: %s is not allowed; PKIOperation uses POST or GET", req->method_name);
            http_add_header(resp, "Allow", "GET, POST");
        }
        return;
    }
    int is_caps = strcmp(op, "GetCACaps") == 0, is_cert = strcmp(op, "GetCACert") == 0;
    if (!is_caps && !is_cert) {
        http_refuse(resp, 400, 0, "SCEP: unsupported operation '%s'", resp->log_type);
        return;
    }
    if (!get) {
        http_refuse(resp, 405, 0, "SCEP: %s is not allowed; %s uses GET", req->method_name, op);
        http_add_header(resp, "Allow", "GET");
        return;
    }
    if (is_caps)
        get_ca_caps(resp);
    else
        get_ca_cert(w, resp);
}

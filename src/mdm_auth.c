/* Device request identity (see mdm_auth.h for the rules). */
#include "mdm_auth.h"

#include <stdio.h>
#include <string.h>

#include "pki.h"
#include "util.h"

/* How long a connection's verified TLS client certificate is trusted
 * before it is verified again. */
#define MTLS_REVERIFY_SECONDS 300

/* Hashes the verified certificate and refuses it if orchard issued it and
 * an admin revoked it since (certificates from other CAs are not in the
 * issued list and pass). */
static int finish(const worker_t *w, mdm_identity_t *out, X509 *cert, const char *source, char *err,
                  size_t errlen)
{
    if (!out->sha256[0] && pki_cert_sha256_hex(cert, out->sha256) != 0) {
        X509_free(cert);
        snprintf(err, errlen, "cannot hash the client certificate");
        return 401;
    }
    issued_cert_t issued;
    int rc = w->store->ops->cert_by_sha256(w->store, out->sha256, &issued);
    int revoked = rc == STORE_OK && issued.revoked_at != 0;
    if (rc == STORE_OK)
        issued_cert_free(&issued);
    if (rc == STORE_ERR || revoked) {
        X509_free(cert);
        snprintf(err, errlen, rc == STORE_ERR ? "storage error checking revocation" : "certificate was revoked");
        return rc == STORE_ERR ? 503 : 401;
    }
    out->cert = cert;
    out->source = source;
    return 200;
}

int mdm_identify(const worker_t *w, const http_request_t *req, mdm_identity_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const app_t *app = w->app;
    char why[256];

    const char *sig = http_header(req, "Mdm-Signature");
    if (sig) {
        X509 *cert = identity_from_mdm_signature(app->verifier, sig, req->body, req->body_len, why, sizeof why);
        if (!cert) {
            snprintf(err, errlen, "%s", why);
            return 401;
        }
        return finish(w, out, cert, "mdm-signature", err, errlen);
    }

    const char *hname = app->cfg->client_cert_header;
    const char *hval = hname ? http_header(req, hname) : NULL;
    if (hval && *hval) {
        X509 *cert = identity_from_header(hval, why, sizeof why);
        if (!cert) {
            snprintf(err, errlen, "client certificate header %s: %s", hname, why);
            return 401;
        }
        if (identity_verify_cert(app->verifier, cert, NULL, why, sizeof why) != 0) {
            X509_free(cert);
            snprintf(err, errlen, "client certificate (header %s) is not trusted: %s", hname, why);
            return 401;
        }
        return finish(w, out, cert, "header", err, errlen);
    }

    if (req->peer_cert) {
        /* A keep-alive connection verifies its certificate once; the memo
         * expires so a certificate that expires mid-connection is noticed.
         * Revocation is still checked on every request (finish). */
        int64_t now = util_now();
        const char *known = http_conn_identity(req, now, MTLS_REVERIFY_SECONDS);
        if (known) {
            snprintf(out->sha256, sizeof out->sha256, "%s", known);
        } else {
            if (identity_verify_cert(app->verifier, req->peer_cert, req->peer_chain, why, sizeof why) != 0) {
                snprintf(err, errlen, "client certificate (TLS) is not trusted: %s", why);
                return 401;
            }
            if (pki_cert_sha256_hex(req->peer_cert, out->sha256) != 0) {
                snprintf(err, errlen, "cannot hash the client certificate");
                return 401;
            }
            http_conn_remember_identity(req, out->sha256, now);
        }
        X509_up_ref(req->peer_cert);
        return finish(w, out, req->peer_cert, "mtls", err, errlen);
    }
    snprintf(err, errlen, "no client certificate (no TLS client certificate, no Mdm-Signature%s)",
             hname ? ", no proxy header" : "");
    return 401;
}

void mdm_identity_clear(mdm_identity_t *id)
{
    X509_free(id->cert);
    memset(id, 0, sizeof *id);
}

int mdm_authorize(worker_t *w, const mdm_identity_t *id, const char *device_id, enrollment_t *dev, char *err,
                  size_t errlen)
{
    memset(dev, 0, sizeof *dev);
    int rc = w->store->ops->enrollment_get(w->store, device_id, dev);
    if (rc == STORE_NOTFOUND) {
        snprintf(err, errlen, "unknown device: no Authenticate for this UDID");
        return 401;
    }
    if (rc != STORE_OK) {
        snprintf(err, errlen, "storage error: %s", w->store->ops->errmsg(w->store));
        return 503;
    }
    if (!dev->cert_sha256 || strcmp(dev->cert_sha256, id->sha256) != 0) {
        snprintf(err, errlen, "certificate %.16s... is not the one bound to this UDID", id->sha256);
        enrollment_free(dev);
        return 401;
    }
    return 200;
}

int mdm_channel_active(worker_t *w, const mdm_message_t *m, const enrollment_t *dev, int64_t *last_seen,
                       int *silent, char *why, size_t len)
{
    if (strcmp(dev->state, ENR_STATE_ACTIVE) != 0) {
        snprintf(why, len, "device enrollment is %s, not active", dev->state);
        return 401;
    }
    if (last_seen)
        *last_seen = dev->last_seen_at;
    if (silent)
        *silent = dev->silent_since > 0;
    if (!m->user_channel)
        return 0;
    enrollment_t u;
    int rc = w->store->ops->enrollment_get(w->store, m->id, &u);
    if (rc == STORE_ERR) {
        snprintf(why, len, "storage error: %s", w->store->ops->errmsg(w->store));
        return 503;
    }
    if (rc == STORE_NOTFOUND) {
        snprintf(why, len, "unknown user channel");
        return 401;
    }
    int active = strcmp(u.state, ENR_STATE_ACTIVE) == 0;
    if (last_seen)
        *last_seen = u.last_seen_at;
    if (silent)
        *silent = u.silent_since > 0;
    enrollment_free(&u);
    if (!active) {
        snprintf(why, len, "user channel is not active");
        return 401;
    }
    return 0;
}

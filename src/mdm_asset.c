/* Asset data for DDM asset declarations: GET /mdm/assets/<name>.
 *
 * An asset declaration's Reference.DataURL points here. Apple treats such a
 * URL "as hosted by the MDM server and applies normal MDM protocol rules":
 * the device connects with its MDM identity certificate. A GET has no body,
 * so there is no Mdm-Signature: the identity comes from mTLS (or the
 * trusted proxy header), and it must be the certificate bound to an active
 * device enrollment. Unknown names are 404, missing or unbound identities
 * 401.
 *
 * Built in: "orchard-anchor.pem", the certificates devices must trust for
 * this server (the same anchors enrollment profiles carry), as PEM; the Apple
 * Watch enrollment declaration references it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "app.h"
#include "mdm_auth.h"

#define ASSET_PREFIX "/mdm/assets/"
#define ANCHOR_ASSET "orchard-anchor.pem"
#define ASSET_NAME_MAX 128

/* [A-Za-z0-9._-], 1..128, not "." or "..". */
int mdm_asset_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > ASSET_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static void reply_anchors(const app_t *app, http_response_t *resp)
{
    BIO *b = BIO_new(BIO_s_mem());
    int ok = b != NULL;
    for (int i = 0; ok && app->anchors && i < sk_X509_num(app->anchors); i++) {
        X509 *x = sk_X509_value(app->anchors, i);
        int dup = 0;
        for (int j = 0; j < i && !dup; j++)
            dup = X509_cmp(sk_X509_value(app->anchors, j), x) == 0;
        if (!dup)
            ok = PEM_write_bio_X509(b, x) == 1;
    }
    char *data = NULL;
    long n = ok ? BIO_get_mem_data(b, &data) : -1;
    if (n > 0)
        http_reply(resp, 200, "application/pem", data, (size_t)n);
    else
        http_refuse(resp, 503, 0, "cannot encode the anchor certificates");
    BIO_free(b);
}

void mdm_asset_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    if (req->method != HTTP_M_GET) {
        http_refuse(resp, 405, 0, "%s is not allowed here; asset data is fetched with GET", req->method_name);
        http_add_header(resp, "Allow", "GET");
        return;
    }
    const char *name = req->path + strlen(ASSET_PREFIX);
    HTTP_LOG(resp, log_type, "asset");
    char why[256];
    mdm_identity_t ident;
    int code = mdm_identify(w, req, &ident, why, sizeof why);
    if (code != 200) {
        http_refuse(resp, code, 0, "asset %.64s: %s", name, why);
        return;
    }
    store_t *s = w->store;
    enrollment_t dev;
    int rc = s->ops->enrollment_by_cert(s, ident.sha256, &dev);
    mdm_identity_clear(&ident);
    if (rc == STORE_ERR) {
        http_refuse(resp, 503, 0, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 401, 0, "asset %.64s: certificate is not bound to an enrollment", name);
        return;
    }
    HTTP_LOG(resp, log_id, dev.id);
    int active = strcmp(dev.state, ENR_STATE_ACTIVE) == 0;
    enrollment_free(&dev);
    if (!active) {
        http_refuse(resp, 401, 0, "asset %.64s: enrollment is not active", name);
        return;
    }
    if (!mdm_asset_name_valid(name)) {
        http_refuse(resp, 404, 0, "no asset data named '%.64s'", name);
        return;
    }
    if (strcmp(name, ANCHOR_ASSET) == 0) {
        reply_anchors(w->app, resp);
        return;
    }
    asset_data_t a;
    rc = s->ops->asset_data_get ? s->ops->asset_data_get(s, name, &a) : STORE_ERR;
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 404, 0, "no asset data named '%s'", name);
        return;
    }
    if (rc != STORE_OK) {
        http_refuse(resp, 503, 0, "storage error: %s", s->ops->asset_data_get ? s->ops->errmsg(s) : "no asset data");
        return;
    }
    /* The device checks Content-Type, size and SHA-256 against the asset's
     * Reference: send the stored bytes and type unchanged. */
    http_reply(resp, 200, NULL, a.data, a.len);
    /* resp keeps a pointer to its content type: a header is copied. */
    http_add_header(resp, "Content-Type", a.content_type ? a.content_type : "application/octet-stream");
    asset_data_free(&a);
}

/* Signed profile checks for the tests (profilecheck.h). */
#include "profilecheck.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>

#include "pki.h"

plist_t *profilecheck_open(const void *der, size_t len, X509 *ca)
{
    const unsigned char *start = der, *q = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &q, (long)len);
    X509_STORE *store = X509_STORE_new();
    BIO *out = BIO_new(BIO_s_mem());
    plist_t *p = NULL;
    if (!cms || q != start + len || CMS_is_detached(cms)) {
        fprintf(stderr, "profilecheck: not one attached CMS SignedData\n");
        goto done;
    }
    if (!store || !out || X509_STORE_add_cert(store, ca) != 1)
        goto done;
    X509_STORE_set_purpose(store, X509_PURPOSE_ANY);
    if (CMS_verify(cms, NULL, store, NULL, out, CMS_BINARY) != 1) {
        ERR_print_errors_fp(stderr);
        goto done;
    }
    char *data = NULL;
    long n = BIO_get_mem_data(out, &data);
    char why[256];
    if (!(p = plist_parse(data, (size_t)n, why, sizeof why)))
        fprintf(stderr, "profilecheck: content is not a plist: %s\n", why);
done:
    BIO_free(out);
    X509_STORE_free(store);
    CMS_ContentInfo_free(cms);
    return p;
}

plist_t *profilecheck_open_file(const void *der, size_t len, const char *ca_path)
{
    X509 *ca = pki_load_cert(ca_path);
    plist_t *p = ca ? profilecheck_open(der, len, ca) : NULL;
    X509_free(ca);
    return p;
}

const plist_t *profilecheck_payload(const plist_t *profile, const char *type, int nth)
{
    const plist_t *content = plist_dict_get(profile, "PayloadContent");
    for (size_t i = 0; i < plist_array_size(content); i++) {
        const plist_t *p = plist_array_get(content, i);
        const char *t = plist_dict_get_string(p, "PayloadType");
        if (t && strcmp(t, type) == 0 && nth-- == 0)
            return p;
    }
    return NULL;
}

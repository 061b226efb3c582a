/* ADE server tokens: key pair and token-file decryption (see ade_token.h). */
#include "ade_token.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/pem.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "ade_time.h"
#include "pki.h"
#include "util.h"

#define BEGIN_MARK "-----BEGIN MESSAGE-----"
#define END_MARK "-----END MESSAGE-----"

static void free_secret_str(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void ade_creds_free(ade_creds_t *c)
{
    if (!c)
        return;
    free_secret_str(c->consumer_key);
    free_secret_str(c->consumer_secret);
    free_secret_str(c->access_token);
    free_secret_str(c->access_secret);
    memset(c, 0, sizeof *c);
}

int ade_keypair_create(const char *data_dir, int force, char **err)
{
    char *cert_path = util_strdup_printf("%s/%s", data_dir, ADE_CERT_FILE);
    char *key_path = util_strdup_printf("%s/%s", data_dir, ADE_CERT_KEY_FILE);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int rc = -1;
    if (!cert_path || !key_path) {
        *err = strdup("out of memory");
        goto out;
    }
    if (!force && access(cert_path, F_OK) == 0 && access(key_path, F_OK) == 0) {
        rc = 1;
        goto out;
    }
    /* Apple encrypts the token with RSA key transport: the key must be RSA. */
    if (!(key = pki_new_rsa_key(2048)) ||
        !(cert = pki_issue_cert(NULL, key, key, "orchard ADE token", 5 * 365, PKI_USAGE_CLIENT, NULL, 0))) {
        *err = strdup("cannot create the ADE key pair");
        goto out;
    }
    if (pki_write_key(key_path, key) != 0 || pki_write_cert(cert_path, cert) != 0) {
        *err = util_strdup_printf("cannot write %s / %s: %s", key_path, cert_path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(key);
    X509_free(cert);
    free(cert_path);
    free(key_path);
    return rc;
}

static char *dup_field(json_t *o, const char *name)
{
    const char *v = json_string_value(json_object_get(o, name));
    return v && *v ? strdup(v) : NULL;
}

int ade_creds_from_json(const char *text, size_t len, ade_creds_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        util_set_err(err, errlen, "the token message is not a JSON object (%s)", o ? "wrong type" : je.text);
        json_decref(o);
        return -1;
    }
    out->consumer_key = dup_field(o, "consumer_key");
    out->consumer_secret = dup_field(o, "consumer_secret");
    out->access_token = dup_field(o, "access_token");
    out->access_secret = dup_field(o, "access_secret");
    const char *missing = !out->consumer_key      ? "consumer_key"
                          : !out->consumer_secret ? "consumer_secret"
                          : !out->access_token    ? "access_token"
                          : !out->access_secret   ? "access_secret"
                                                  : NULL;
    json_t *exp = json_object_get(o, "access_token_expiry");
    int bad_expiry = 0;
    if (json_is_string(exp))
        bad_expiry = ade_time_parse(json_string_value(exp), &out->access_token_expiry) != 0;
    else if (json_is_integer(exp)) /* as orchard stores it */
        out->access_token_expiry = json_integer_value(exp);
    else if (exp)
        bad_expiry = 1;
    json_decref(o);
    if (missing || bad_expiry) {
        util_set_err(err, errlen, missing ? "the token has no %s" : "the token's %s is not an ISO 8601 time",
                     missing ? missing : "access_token_expiry");
        ade_creds_free(out);
        return -1;
    }
    return 0;
}

char *ade_creds_to_json(const ade_creds_t *c)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I}", "consumer_key", c->consumer_key, "consumer_secret",
                          c->consumer_secret, "access_token", c->access_token, "access_secret", c->access_secret,
                          "access_token_expiry", (json_int_t)c->access_token_expiry);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* The S/MIME message Apple sends; a bare DER CMS is accepted too
 * (some admins convert the file). */
static CMS_ContentInfo *read_cms(const void *file, size_t len)
{
    BIO *b = BIO_new_mem_buf(file, (int)len);
    CMS_ContentInfo *cms = b ? SMIME_read_CMS(b, NULL) : NULL;
    BIO_free(b);
    if (!cms && (b = BIO_new_mem_buf(file, (int)len))) {
        cms = d2i_CMS_bio(b, NULL);
        BIO_free(b);
    }
    ERR_clear_error();
    return cms;
}

int ade_token_decrypt(const char *data_dir, const void *file, size_t len, ade_creds_t *out, char **err)
{
    memset(out, 0, sizeof *out);
    char *cert_path = util_strdup_printf("%s/%s", data_dir, ADE_CERT_FILE);
    char *key_path = util_strdup_printf("%s/%s", data_dir, ADE_CERT_KEY_FILE);
    X509 *cert = cert_path ? pki_load_cert(cert_path) : NULL;
    EVP_PKEY *key = key_path ? pki_load_key(key_path) : NULL;
    CMS_ContentInfo *cms = NULL;
    BIO *plain = NULL;
    int rc = -1;
    char why[256];
    if (!cert || !key) {
        *err = util_strdup_printf("no ADE key pair in %s (run `orchard ade keypair` and upload %s to Apple first)",
                                  data_dir, ADE_CERT_FILE);
        goto out;
    }
    if (len == 0 || len > ADE_TOKEN_MAX || !(cms = read_cms(file, len))) {
        *err = strdup("the token file is not an S/MIME (PKCS#7) message");
        goto out;
    }
    if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_enveloped) {
        *err = strdup("the token file is not encrypted (PKCS#7 enveloped data expected)");
        goto out;
    }
    if (!(plain = BIO_new(BIO_s_mem())) || CMS_decrypt(cms, key, cert, NULL, plain, 0) != 1) {
        ERR_clear_error();
        *err = strdup("the token file is not encrypted to this server's ADE certificate (was it downloaded for "
                      "another MDM server, or before the current key pair was made?)");
        goto out;
    }
    char *data = NULL;
    long n = BIO_get_mem_data(plain, &data);
    /* The decrypted entity may start with MIME headers; the JSON sits
     * between the markers. */
    const char *begin = n > 0 ? memmem(data, (size_t)n, BEGIN_MARK, strlen(BEGIN_MARK)) : NULL;
    const char *end = begin ? memmem(begin, (size_t)(data + n - begin), END_MARK, strlen(END_MARK)) : NULL;
    if (!begin || !end) {
        *err = strdup("the decrypted token has no -----BEGIN MESSAGE----- / -----END MESSAGE----- block");
        goto out;
    }
    begin += strlen(BEGIN_MARK);
    if (ade_creds_from_json(begin, (size_t)(end - begin), out, why, sizeof why) != 0) {
        *err = strdup(why);
        goto out;
    }
    rc = 0;
out:
    if (plain) {
        char *d = NULL;
        long n2 = BIO_get_mem_data(plain, &d);
        if (n2 > 0)
            OPENSSL_cleanse(d, (size_t)n2);
        BIO_free(plain);
    }
    CMS_ContentInfo_free(cms);
    X509_free(cert);
    EVP_PKEY_free(key);
    free(cert_path);
    free(key_path);
    return rc;
}

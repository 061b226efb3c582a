/* MachineInfo: verify the CMS signature and signer chain, then parse and
 * type-check the plist (see machineinfo.h). */
#include "machineinfo.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include "mdm_message.h"
#include "plist.h"
#include "util.h"

/* A device signs once, with one digest, and sends its certificate plus a
 * few intermediates. CMS_verify hashes the content once per entry of
 * digestAlgorithms (duplicates included) before checking any signature, so
 * an unauthenticated body could otherwise ask for thousands of passes. */
#define MI_MAX_SIGNERS 4
#define MI_MAX_DIGEST_ALGS 4
#define MI_MAX_CERTS 16
/* Printable fields are stored and logged: keep them short. */
#define MI_MAX_STRING 256
#define MI_MAX_PAIRING_TOKEN 16384

void machineinfo_free(machineinfo_t *m)
{
    if (!m)
        return;
    free(m->udid);
    free(m->serial);
    free(m->product);
    free(m->version);
    free(m->os_version);
    free(m->supplemental_build_version);
    free(m->supplemental_os_version_extra);
    free(m->imei);
    free(m->meid);
    free(m->language);
    free(m->software_update_device_id);
    free(m->pairing_token);
    X509_free(m->signer);
    memset(m, 0, sizeof *m);
}

/* ---- DER walking (only to count digestAlgorithms) ---------------------------- */

/* Reads the header of one definite-length element at *p (avail bytes). With
 * want_tag >= 0 the tag must match (universal class, or context-specific
 * when ctx is set). enter: move *p to the content; else past the element.
 * Returns the content length or -1. */
static long der_step(const unsigned char **p, long avail, int want_tag, int ctx, int enter)
{
    const unsigned char *q = *p;
    long len = 0;
    int tag = 0, cls = 0;
    int r = ASN1_get_object(&q, &len, &tag, &cls, avail);
    if ((r & 0x80) || (r & 0x01)) /* error, or indefinite length */
        return -1;
    if (want_tag >= 0 && (tag != want_tag || cls != (ctx ? V_ASN1_CONTEXT_SPECIFIC : V_ASN1_UNIVERSAL)))
        return -1;
    *p = enter ? q : q + len;
    return len;
}

/* Entries in SignedData.digestAlgorithms of a DER ContentInfo, -1 if the
 * structure is not shaped like one. OpenSSL offers no accessor for it. */
static int digest_algorithm_count(const unsigned char *der, long len)
{
    const unsigned char *p = der, *end = der + len;
    if (der_step(&p, end - p, V_ASN1_SEQUENCE, 0, 1) < 0 || /* ContentInfo */
        der_step(&p, end - p, V_ASN1_OBJECT, 0, 0) < 0 ||   /* contentType */
        der_step(&p, end - p, 0, 1, 1) < 0 ||               /* [0] EXPLICIT */
        der_step(&p, end - p, V_ASN1_SEQUENCE, 0, 1) < 0 || /* SignedData */
        der_step(&p, end - p, V_ASN1_INTEGER, 0, 0) < 0)    /* version */
        return -1;
    long set_len = der_step(&p, end - p, V_ASN1_SET, 0, 1);
    if (set_len < 0 || set_len > end - p)
        return -1;
    const unsigned char *set_end = p + set_len;
    int n = 0;
    while (p < set_end) {
        if (der_step(&p, set_end - p, -1, 0, 0) < 0)
            return -1;
        n++;
    }
    return n;
}

/* ---- signature --------------------------------------------------------------- */

/* DER bytes of the body: as sent, or decoded from base64. Sets *owned when
 * the result is a new buffer. */
static const unsigned char *body_der(const unsigned char *body, size_t len, size_t *der_len, unsigned char **owned,
                                     char *err, size_t errlen)
{
    *owned = NULL;
    if (body[0] == 0x30) { /* SEQUENCE: DER/BER already */
        *der_len = len;
        return body;
    }
    size_t start = 0;
    while (start < len && (body[start] == ' ' || body[start] == '\t' || body[start] == '\r' || body[start] == '\n'))
        start++;
    if (start < len && body[start] == '<') {
        util_set_err(err, errlen, "MachineInfo is not signed: expected a CMS SignedData (application/pkcs7-signature), "
                             "got a bare plist");
        return NULL;
    }
    size_t n = 0;
    unsigned char *dec = util_base64_decode((const char *)body, len, &n);
    if (!dec || n == 0 || dec[0] != 0x30) {
        free(dec);
        util_set_err(err, errlen, "MachineInfo is not a CMS SignedData (neither DER nor base64 of DER)");
        return NULL;
    }
    *owned = dec;
    *der_len = n;
    return dec;
}

/* Verifies the CMS structure; returns the content (heap, NUL-terminated) and
 * the signer certificate (up-ref'd). */
static machineinfo_result_t verify(const identity_verifier_t *v, const unsigned char *der, size_t der_len,
                                   char **content, size_t *content_len, X509 **signer_out, char *err,
                                   size_t errlen)
{
    machineinfo_result_t rc = MACHINEINFO_MALFORMED;
    CMS_ContentInfo *cms = NULL;
    STACK_OF(X509) *certs = NULL, *signers = NULL;
    BIO *out = NULL;
    unsigned char *reenc = NULL;
    *content = NULL;
    *signer_out = NULL;

    if (der_len > LONG_MAX) {
        util_set_err(err, errlen, "MachineInfo is too large");
        return rc;
    }
    const unsigned char *p = der;
    cms = d2i_CMS_ContentInfo(NULL, &p, (long)der_len);
    if (!cms || p != der + der_len) {
        util_set_err(err, errlen, "MachineInfo is not a CMS structure%s", cms ? " (trailing bytes)" : "");
        goto out;
    }
    if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
        util_set_err(err, errlen, "MachineInfo is a CMS structure but not SignedData");
        goto out;
    }
    ASN1_OCTET_STRING **pos = CMS_get0_content(cms);
    if (CMS_is_detached(cms) == 1 || !pos || !*pos) {
        util_set_err(err, errlen, "MachineInfo signature is detached: the plist must be the signed content");
        goto out;
    }
    if (OBJ_obj2nid(CMS_get0_eContentType(cms)) != NID_pkcs7_data) {
        util_set_err(err, errlen, "MachineInfo signed content is not of type data");
        goto out;
    }
    int clen = ASN1_STRING_length(*pos);
    if (clen <= 0 || clen > MACHINEINFO_MAX_CONTENT) {
        util_set_err(err, errlen, "MachineInfo content is %s", clen <= 0 ? "empty" : "larger than 64 KiB");
        goto out;
    }
    STACK_OF(CMS_SignerInfo) *sinfos = CMS_get0_SignerInfos(cms);
    int nsigners = sk_CMS_SignerInfo_num(sinfos);
    if (nsigners <= 0) {
        util_set_err(err, errlen, "MachineInfo has no signer");
        goto out;
    }
    /* BER input has no fixed lengths to walk; its DER re-encoding has. */
    int reenc_len = i2d_CMS_ContentInfo(cms, &reenc);
    int ndigests = reenc_len > 0 ? digest_algorithm_count(reenc, reenc_len) : -1;
    if (ndigests < 0) {
        util_set_err(err, errlen, "MachineInfo is not a well-formed SignedData");
        goto out;
    }
    certs = CMS_get1_certs(cms);
    if (nsigners > MI_MAX_SIGNERS || ndigests > MI_MAX_DIGEST_ALGS || sk_X509_num(certs) > MI_MAX_CERTS) {
        util_set_err(err, errlen, "MachineInfo has too many signers, digest algorithms or certificates");
        goto out;
    }
    /* Every signer must be matched by a certificate in the structure: the
     * device sends its own, there is no other place to look it up. */
    CMS_set1_signers_certs(cms, NULL, 0);
    for (int i = 0; i < nsigners; i++) {
        X509 *sc = NULL;
        CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sinfos, i), NULL, &sc, NULL, NULL);
        if (!sc) {
            util_set_err(err, errlen, "MachineInfo does not include the signer's certificate");
            rc = MACHINEINFO_UNTRUSTED;
            goto out;
        }
    }
    out = BIO_new(BIO_s_mem());
    if (!out) {
        util_set_err(err, errlen, "out of memory");
        goto out;
    }
    /* Signature first (binary content, no MIME canonicalisation), then the
     * signer's chain against our own trust anchors. */
    if (CMS_verify(cms, NULL, NULL, NULL, out, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        util_set_err(err, errlen, "MachineInfo signature does not verify (content altered or wrong key)");
        rc = MACHINEINFO_UNTRUSTED;
        goto out;
    }
    signers = CMS_get0_signers(cms);
    X509 *signer = sk_X509_value(signers, 0);
    char reason[256];
    if (!signer) {
        util_set_err(err, errlen, "MachineInfo does not include the signer's certificate");
        rc = MACHINEINFO_UNTRUSTED;
        goto out;
    }
    for (int i = 0; i < sk_X509_num(signers); i++) {
        if (identity_verify_cert(v, sk_X509_value(signers, i), certs, reason, sizeof reason) != 0) {
            util_set_err(err, errlen, "MachineInfo signer is not trusted (--machineinfo-ca): %s", reason);
            rc = MACHINEINFO_UNTRUSTED;
            goto out;
        }
    }
    char *data = NULL;
    long n = BIO_get_mem_data(out, &data);
    if (n <= 0 || n > MACHINEINFO_MAX_CONTENT) {
        util_set_err(err, errlen, "MachineInfo content is empty or too large");
        goto out;
    }
    char *copy = malloc((size_t)n + 1);
    if (!copy || X509_up_ref(signer) != 1) {
        free(copy);
        util_set_err(err, errlen, "out of memory");
        goto out;
    }
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    *content = copy;
    *content_len = (size_t)n;
    *signer_out = signer;
    rc = MACHINEINFO_OK;
out:
    OPENSSL_free(reenc);
    BIO_free(out);
    sk_X509_free(signers);
    sk_X509_pop_free(certs, X509_free);
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return rc;
}

/* ---- keys -------------------------------------------------------------------- */

/* printable: the value is stored and may appear in logs. id_rules: also an
 * enrollment id (no spaces, separators or quotes). */
static int take_string(const plist_t *d, const char *key, int required, int id_rules, char **slot, char *err,
                       size_t errlen)
{
    const plist_t *v = plist_dict_get(d, key);
    if (!v) {
        if (required)
            util_set_err(err, errlen, "MachineInfo: %s is missing", key);
        return required ? -1 : 0;
    }
    if (plist_type(v) != PLIST_STRING) {
        util_set_err(err, errlen, "MachineInfo: %s must be a string, not %s", key, plist_type_name(plist_type(v)));
        return -1;
    }
    const char *s = plist_string(v);
    size_t n = strnlen(s, MI_MAX_STRING + 1);
    if (n == 0 || n > MI_MAX_STRING) {
        util_set_err(err, errlen, "MachineInfo: %s is %s", key, n == 0 ? "empty" : "longer than 256 characters");
        return -1;
    }
    if (id_rules && !mdm_id_valid(s)) {
        util_set_err(err, errlen, "MachineInfo: %s has characters outside printable ASCII or one of space / , : %% \" ' \\",
                key);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            util_set_err(err, errlen, "MachineInfo: %s contains control characters", key);
            return -1;
        }
    }
    if (!(*slot = strdup(s))) {
        util_set_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_keys(const char *xml, size_t len, machineinfo_t *m, char *err, size_t errlen)
{
    char why[256];
    plist_t *d = plist_parse(xml, len, why, sizeof why);
    if (!d) {
        util_set_err(err, errlen, "MachineInfo content is not a valid plist: %s", why);
        return -1;
    }
    int rc = -1;
    if (plist_type(d) != PLIST_DICT) {
        util_set_err(err, errlen, "MachineInfo content must be a dict, not %s", plist_type_name(plist_type(d)));
        goto out;
    }
    if (take_string(d, "UDID", 1, 1, &m->udid, err, errlen) || take_string(d, "SERIAL", 1, 1, &m->serial, err, errlen) ||
        take_string(d, "PRODUCT", 1, 0, &m->product, err, errlen) ||
        take_string(d, "VERSION", 1, 0, &m->version, err, errlen) ||
        take_string(d, "OS_VERSION", 0, 0, &m->os_version, err, errlen) ||
        take_string(d, "SUPPLEMENTAL_BUILD_VERSION", 0, 0, &m->supplemental_build_version, err, errlen) ||
        take_string(d, "SUPPLEMENTAL_OS_VERSION_EXTRA", 0, 0, &m->supplemental_os_version_extra, err, errlen) ||
        take_string(d, "IMEI", 0, 0, &m->imei, err, errlen) || take_string(d, "MEID", 0, 0, &m->meid, err, errlen) ||
        take_string(d, "LANGUAGE", 0, 0, &m->language, err, errlen) ||
        take_string(d, "SOFTWARE_UPDATE_DEVICE_ID", 0, 0, &m->software_update_device_id, err, errlen))
        goto out;
    const plist_t *b = plist_dict_get(d, "MDM_CAN_REQUEST_SOFTWARE_UPDATE");
    if (b) {
        if (plist_type(b) != PLIST_BOOL) {
            util_set_err(err, errlen, "MachineInfo: MDM_CAN_REQUEST_SOFTWARE_UPDATE must be a boolean, not %s",
                    plist_type_name(plist_type(b)));
            goto out;
        }
        m->mdm_can_request_software_update = plist_bool(b);
    }
    const plist_t *t = plist_dict_get(d, "PAIRING_TOKEN");
    if (t) {
        if (plist_type(t) != PLIST_DATA) {
            util_set_err(err, errlen, "MachineInfo: PAIRING_TOKEN must be data, not %s", plist_type_name(plist_type(t)));
            goto out;
        }
        size_t tl = 0;
        const unsigned char *tb = plist_data(t, &tl);
        if (tl == 0 || tl > MI_MAX_PAIRING_TOKEN) {
            util_set_err(err, errlen, "MachineInfo: PAIRING_TOKEN is %s", tl == 0 ? "empty" : "larger than 16 KiB");
            goto out;
        }
        if (!(m->pairing_token = malloc(tl))) {
            util_set_err(err, errlen, "out of memory");
            goto out;
        }
        memcpy(m->pairing_token, tb, tl);
        m->pairing_token_len = tl;
    }
    rc = 0;
out:
    plist_free(d);
    return rc;
}

machineinfo_result_t machineinfo_verify_and_parse(const identity_verifier_t *v, const void *body, size_t len,
                                                  machineinfo_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!v) {
        util_set_err(err, errlen, "MachineInfo verification is not configured (--machineinfo-ca)");
        return MACHINEINFO_UNTRUSTED;
    }
    if (!body || len == 0) {
        util_set_err(err, errlen, "MachineInfo is missing (empty body)");
        return MACHINEINFO_MALFORMED;
    }
    unsigned char *owned = NULL;
    size_t der_len = 0;
    const unsigned char *der = body_der(body, len, &der_len, &owned, err, errlen);
    if (!der)
        return MACHINEINFO_MALFORMED;
    char *xml = NULL;
    size_t xml_len = 0;
    machineinfo_result_t rc = verify(v, der, der_len, &xml, &xml_len, &out->signer, err, errlen);
    free(owned);
    if (rc != MACHINEINFO_OK)
        return rc;
    if (parse_keys(xml, xml_len, out, err, errlen) != 0) {
        machineinfo_free(out);
        rc = MACHINEINFO_MALFORMED;
    }
    free(xml);
    return rc;
}

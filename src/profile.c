/* Enrollment profiles: build the plist, sign it (see profile.h). */
#include "profile.h"

#include "util.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "pki.h"

void profile_opts_init(profile_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->sign_message = 1;
}

/* ---- identifiers ------------------------------------------------------------ */

char *profile_identifier(const char *public_url)
{
    if (!public_url)
        return NULL;
    const char *p = strstr(public_url, "://");
    p = p ? p + 3 : public_url;
    size_t n;
    if (*p == '[') { /* IPv6 literal: keep what is inside the brackets */
        p++;
        n = strcspn(p, "]");
    } else {
        n = strcspn(p, ":/?#");
    }
    if (n == 0 || n > 253)
        return NULL;
    char *id = util_strdup_printf("com.orchard.enroll.%.*s", (int)n, p);
    if (!id)
        return NULL;
    for (char *c = id + strlen("com.orchard.enroll."); *c; c++) {
        unsigned char u = (unsigned char)*c;
        *c = isalnum(u) || u == '-' || u == '.' ? (char)tolower(u) : '-';
    }
    return id;
}

/* public_url without a trailing slash, followed by suffix. */
static char *url_join(const char *base, const char *suffix)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    return util_strdup_printf("%.*s%s", (int)n, base, suffix);
}

/* ---- payloads ----------------------------------------------------------------- */

/* The four keys every payload dict carries (CommonPayloadKeys). */
static plist_t *payload_new(const char *type, const char *identifier, const char *org, const char *display,
                            char uuid_out[37])
{
    plist_t *d = plist_new_dict();
    char uuid[37];
    if (!d || util_uuid4(uuid) != 0) {
        plist_free(d);
        return NULL;
    }
    int ok = plist_dict_set(d, "PayloadType", plist_new_string(type)) == 0;
    ok = ok && plist_dict_set(d, "PayloadVersion", plist_new_integer(1)) == 0;
    ok = ok && plist_dict_set(d, "PayloadIdentifier", plist_new_string(identifier)) == 0;
    ok = ok && plist_dict_set(d, "PayloadUUID", plist_new_string(uuid)) == 0;
    ok = ok && plist_dict_set(d, "PayloadOrganization", plist_new_string(org)) == 0;
    if (ok && display)
        ok = plist_dict_set(d, "PayloadDisplayName", plist_new_string(display)) == 0;
    if (!ok) {
        plist_free(d);
        return NULL;
    }
    if (uuid_out)
        memcpy(uuid_out, uuid, 37);
    return d;
}

static int already_seen(STACK_OF(X509) *anchors, int upto, X509 *x)
{
    for (int j = 0; j < upto; j++)
        if (X509_cmp(sk_X509_value(anchors, j), x) == 0)
            return 1;
    return 0;
}

/* One payload per distinct anchor. A self-signed certificate is a root
 * (com.apple.security.root); the others (the TLS leaf and intermediates)
 * go in as plain certificates (com.apple.security.pkcs1): marking a leaf as
 * a root would be wrong, but devices still need the intermediates. */
static int add_anchors(plist_t *content, STACK_OF(X509) *anchors, const char *ident, const char *org)
{
    int emitted = 0;
    for (int i = 0; i < sk_X509_num(anchors); i++) {
        X509 *x = sk_X509_value(anchors, i);
        if (!x || already_seen(anchors, i, x))
            continue;
        unsigned char *der = NULL;
        int der_len = i2d_X509(x, &der);
        if (der_len <= 0) {
            ERR_clear_error();
            return -1;
        }
        int self_signed = (X509_get_extension_flags(x) & EXFLAG_SS) != 0;
        char cn[128] = "certificate";
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
        ERR_clear_error();
        emitted++;
        char *pid = util_strdup_printf("%s.anchor%d", ident, emitted);
        char *file = util_strdup_printf("anchor%d.cer", emitted);
        plist_t *p = pid && file ? payload_new(self_signed ? "com.apple.security.root" : "com.apple.security.pkcs1",
                                               pid, org, cn, NULL)
                                 : NULL;
        int ok = p != NULL;
        ok = ok && plist_dict_set(p, "PayloadCertificateFileName", plist_new_string(file)) == 0;
        ok = ok && plist_dict_set(p, "PayloadContent", plist_new_data(der, (size_t)der_len)) == 0;
        OPENSSL_free(der);
        free(pid);
        free(file);
        if (!ok || plist_array_append(content, p) != 0) {
            if (!ok)
                plist_free(p);
            return -1;
        }
    }
    return 0;
}

/* Subject as Apple's SCEP payload spells it: [ [ ["CN", value] ] ]. */
static plist_t *scep_subject(const char *cn)
{
    plist_t *pair = plist_new_array(), *rdn = plist_new_array(), *name = plist_new_array();
    int ok = pair && rdn && name;
    ok = ok && plist_array_append(pair, plist_new_string("CN")) == 0;
    ok = ok && plist_array_append(pair, plist_new_string(cn)) == 0;
    if (ok) {
        ok = plist_array_append(rdn, pair) == 0;
        pair = NULL;
    }
    if (ok) {
        ok = plist_array_append(name, rdn) == 0;
        rdn = NULL;
    }
    plist_free(pair);
    plist_free(rdn);
    if (!ok) {
        plist_free(name);
        return NULL;
    }
    return name;
}

static plist_t *scep_payload(const profile_opts_t *o, const char *ident, const char *org, char uuid[37],
                             char *err, size_t errlen)
{
    char random_cn[64];
    const char *cn = o->subject_cn;
    if (!cn || !*cn) {
        /* Unknown device: any unique name will do for the first enrollment;
         * the certificate is bound to the UDID at Authenticate. */
        char hex[33];
        if (util_random_hex(hex, 16) != 0) {
            util_set_err(err, errlen, "no randomness for the SCEP subject");
            return NULL;
        }
        snprintf(random_cn, sizeof random_cn, "orchard-device-%s", hex);
        cn = random_cn;
    }
    char *pid = util_strdup_printf("%s.scep", ident);
    char *url = url_join(o->public_url, "/scep");
    plist_t *p = pid && url ? payload_new("com.apple.security.scep", pid, org, "Device identity (SCEP)", uuid) : NULL;
    plist_t *c = plist_new_dict();
    int ok = p && c;
    ok = ok && plist_dict_set(c, "URL", plist_new_string(url)) == 0;
    ok = ok && plist_dict_set(c, "Subject", scep_subject(cn)) == 0;
    if (ok && o->scep_challenge)
        ok = plist_dict_set(c, "Challenge", plist_new_string(o->scep_challenge)) == 0;
    /* Apple's SCEP payload only generates RSA keys ("Key Type": "Always
     * 'RSA'"); Keysize defaults to 1024, so it must be set. */
    ok = ok && plist_dict_set(c, "Key Type", plist_new_string("RSA")) == 0;
    ok = ok && plist_dict_set(c, "Keysize", plist_new_integer(PROFILE_SCEP_KEYSIZE)) == 0;
    /* 1 signing | 4 encryption: the key signs TLS handshakes and
     * Mdm-Signature; some SCEP servers issue for one use only otherwise. */
    ok = ok && plist_dict_set(c, "Key Usage", plist_new_integer(5)) == 0;
    if (ok) {
        ok = plist_dict_set(p, "PayloadContent", c) == 0;
        c = NULL;
    }
    plist_free(c);
    free(pid);
    free(url);
    if (!ok) {
        plist_free(p);
        util_set_err(err, errlen, "out of memory building the SCEP payload");
        return NULL;
    }
    return p;
}

static plist_t *pkcs12_payload(const profile_opts_t *o, const char *ident, const char *org, char uuid[37],
                               char *err, size_t errlen)
{
    char *pid = util_strdup_printf("%s.identity", ident);
    plist_t *p = pid ? payload_new("com.apple.security.pkcs12", pid, org, "Device identity", uuid) : NULL;
    int ok = p != NULL;
    ok = ok && plist_dict_set(p, "PayloadCertificateFileName", plist_new_string("identity.p12")) == 0;
    ok = ok && plist_dict_set(p, "PayloadContent", plist_new_data(o->pkcs12, o->pkcs12_len)) == 0;
    if (ok && o->pkcs12_password)
        ok = plist_dict_set(p, "Password", plist_new_string(o->pkcs12_password)) == 0;
    free(pid);
    if (!ok) {
        plist_free(p);
        util_set_err(err, errlen, "out of memory building the PKCS#12 payload");
        return NULL;
    }
    return p;
}

static plist_t *string_array(const char *const *v, size_t n)
{
    plist_t *a = plist_new_array();
    for (size_t i = 0; a && i < n; i++)
        if (plist_array_append(a, plist_new_string(v[i])) != 0) {
            plist_free(a);
            return NULL;
        }
    return a;
}

static plist_t *mdm_payload(const profile_opts_t *o, const char *ident, const char *org, const char *identity_uuid)
{
    /* per-user-connections: macOS and Shared iPad user channels (orchard
     * serves them); bootstraptoken: macOS Bootstrap Token escrow; token:
     * GetToken check-ins, needed for Apple Watch pairing. Apple refuses an
     * update that adds or removes per-user-connections, so this list must
     * stay the same across renewals. */
    static const char *const caps[] = {"com.apple.mdm.per-user-connections", "com.apple.mdm.bootstraptoken",
                                       "com.apple.mdm.token"};
    char *pid = util_strdup_printf("%s.mdm", ident);
    char *server = url_join(o->public_url, "/mdm/connect");
    char *checkin = url_join(o->public_url, "/mdm/checkin");
    plist_t *p = pid && server && checkin ? payload_new("com.apple.mdm", pid, org, "Device management", NULL) : NULL;
    int ok = p != NULL;
    ok = ok && plist_dict_set(p, "IdentityCertificateUUID", plist_new_string(identity_uuid)) == 0;
    ok = ok && plist_dict_set(p, "Topic", plist_new_string(o->topic)) == 0;
    ok = ok && plist_dict_set(p, "ServerURL", plist_new_string(server)) == 0;
    ok = ok && plist_dict_set(p, "CheckInURL", plist_new_string(checkin)) == 0;
    ok = ok && plist_dict_set(p, "SignMessage", plist_new_bool(o->sign_message)) == 0;
    ok = ok && plist_dict_set(p, "CheckOutWhenRemoved", plist_new_bool(1)) == 0;
    ok = ok && plist_dict_set(p, "AccessRights", plist_new_integer(PROFILE_ACCESS_RIGHTS_ALL)) == 0;
    if (!o->watch)
        ok = ok && plist_dict_set(p, "ServerCapabilities", string_array(caps, sizeof caps / sizeof caps[0])) == 0;
    ok = ok && plist_dict_set(p, "UseDevelopmentAPNS", plist_new_bool(o->use_development_apns)) == 0;
    free(pid);
    free(server);
    free(checkin);
    if (!ok) {
        plist_free(p);
        return NULL;
    }
    return p;
}

plist_t *profile_build(const profile_opts_t *o, char *err, size_t errlen)
{
    if (!o || !o->public_url || strncasecmp(o->public_url, "https://", 8) != 0 || !o->public_url[8]) {
        util_set_err(err, errlen, "the public URL must start with https:// (Apple requires it for ServerURL)");
        return NULL;
    }
    if (!o->topic || !*o->topic) {
        util_set_err(err, errlen, "no push topic: import a push certificate or set --push-topic");
        return NULL;
    }
    if (o->pkcs12 && o->pkcs12_len == 0) {
        util_set_err(err, errlen, "the PKCS#12 identity is empty");
        return NULL;
    }
    const char *org = o->org_name && *o->org_name ? o->org_name : "orchard";
    char *ident = profile_identifier(o->public_url);
    if (!ident) {
        util_set_err(err, errlen, "the public URL has no host name");
        return NULL;
    }
    char *display = util_strdup_printf("%s device management", org);
    char *desc = util_strdup_printf("Enrolls this device in %s's MDM server at %s.", org, o->public_url);
    plist_t *top = display && desc ? payload_new("Configuration", ident, org, display, NULL) : NULL;
    plist_t *content = plist_new_array();
    int ok = top && content;
    ok = ok && plist_dict_set(top, "PayloadDescription", plist_new_string(desc)) == 0;
    if (o->watch)
        ok = ok && plist_dict_set(top, "TargetDeviceType", plist_new_integer(PROFILE_TARGET_WATCH)) == 0;
    free(display);
    free(desc);
    if (ok && o->anchors)
        ok = add_anchors(content, o->anchors, ident, org) == 0;
    if (!ok) {
        util_set_err(err, errlen, "out of memory building the profile");
        goto fail;
    }
    char identity_uuid[37];
    plist_t *identity = o->pkcs12 ? pkcs12_payload(o, ident, org, identity_uuid, err, errlen)
                                  : scep_payload(o, ident, org, identity_uuid, err, errlen);
    if (!identity)
        goto fail;
    if (plist_array_append(content, identity) != 0) {
        util_set_err(err, errlen, "out of memory building the profile");
        goto fail;
    }
    if (plist_array_append(content, mdm_payload(o, ident, org, identity_uuid)) != 0) {
        util_set_err(err, errlen, "out of memory building the MDM payload");
        goto fail;
    }
    if (plist_dict_set(top, "PayloadContent", content) != 0) {
        content = NULL; /* freed by plist_dict_set */
        util_set_err(err, errlen, "out of memory building the profile");
        goto fail;
    }
    free(ident);
    return top;
fail:
    plist_free(content);
    plist_free(top);
    free(ident);
    return NULL;
}

/* ---- signing ----------------------------------------------------------------- */

int profile_sign(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain, const void *data, size_t len,
                 unsigned char **out, size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    if (!cert || !key || !data || len == 0 || len > INT_MAX) {
        util_set_err(err, errlen, "nothing to sign, or no signing identity");
        return -1;
    }
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        util_set_err(err, errlen, "the profile-signing key does not match its certificate");
        return -1;
    }
    /* CMS_sign adds the signer certificate itself and fails on a duplicate,
     * so pass the rest of the chain, each certificate once. */
    STACK_OF(X509) *extra = sk_X509_new_null();
    int ok = extra != NULL;
    for (int i = 0; ok && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        if (X509_cmp(x, cert) == 0 || already_seen(chain, i, x))
            continue;
        ok = sk_X509_push(extra, x) > 0;
    }
    BIO *in = ok ? BIO_new_mem_buf(data, (int)len) : NULL;
    /* Binary: the XML is signed byte for byte (no MIME canonicalisation);
     * no S/MIME capabilities attribute: nothing will encrypt to us. */
    CMS_ContentInfo *cms = in ? CMS_sign(cert, key, extra, in, CMS_BINARY | CMS_NOSMIMECAP) : NULL;
    unsigned char *der = NULL;
    int der_len = cms ? i2d_CMS_ContentInfo(cms, &der) : -1;
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    sk_X509_free(extra);
    if (der_len <= 0) {
        unsigned long e = ERR_peek_last_error();
        util_set_err(err, errlen, "cannot sign the profile: %s", e ? ERR_reason_error_string(e) : "out of memory");
        ERR_clear_error();
        return -1;
    }
    *out = der;
    *outlen = (size_t)der_len;
    return 0;
}

int profile_generate(const profile_opts_t *o, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
                     unsigned char **out, size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    plist_t *p = profile_build(o, err, errlen);
    if (!p)
        return -1;
    size_t xml_len = 0;
    char *xml = plist_to_xml(p, &xml_len);
    plist_free(p);
    if (!xml) {
        util_set_err(err, errlen, "out of memory writing the profile");
        return -1;
    }
    int rc = profile_sign(cert, key, chain, xml, xml_len, out, outlen, err, errlen);
    /* The XML may hold a challenge or a PKCS#12 password. */
    OPENSSL_cleanse(xml, xml_len);
    free(xml);
    return rc;
}

/* ---- PKCS#12 identity ------------------------------------------------------------ */

int profile_issue_pkcs12(X509 *ca, EVP_PKEY *ca_key, const char *cn, int days, unsigned char **der,
                         size_t *der_len, char password[33], X509 **cert_out, char *err, size_t errlen)
{
    *der = NULL;
    *der_len = 0;
    if (cert_out)
        *cert_out = NULL;
    if (!ca || !ca_key) {
        util_set_err(err, errlen, "the CA key is not available: cannot issue an identity");
        return -1;
    }
    if (!cn || !*cn || days < 1) {
        util_set_err(err, errlen, "an identity needs a subject name and a validity");
        return -1;
    }
    if (util_random_hex(password, 16) != 0) {
        util_set_err(err, errlen, "no randomness for the PKCS#12 password");
        return -1;
    }
    EVP_PKEY *key = pki_new_rsa_key(2048);
    X509 *cert = key ? pki_issue_cert(ca, ca_key, key, cn, days, PKI_USAGE_CLIENT, NULL, 0) : NULL;
    PKCS12 *p12 = NULL;
    if (cert) {
        /* SHA-1/3DES and a SHA-1 MAC: Apple's keychain import has long failed
         * on OpenSSL 3's default (PBES2/AES, SHA-256 MAC). The weaker cipher
         * costs nothing here: the password travels in the same profile, so
         * the encryption never protected the key; TLS and the signature do. */
        p12 = PKCS12_create(password, "orchard device identity", key, cert, NULL,
                            NID_pbe_WithSHA1And3_Key_TripleDES_CBC, NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
                            PKCS12_DEFAULT_ITER, -1, 0);
        if (p12 && PKCS12_set_mac(p12, password, -1, NULL, 0, PKCS12_DEFAULT_ITER, EVP_sha1()) != 1) {
            PKCS12_free(p12);
            p12 = NULL;
        }
    }
    unsigned char *buf = NULL;
    int n = p12 ? i2d_PKCS12(p12, &buf) : -1;
    PKCS12_free(p12);
    EVP_PKEY_free(key);
    if (n <= 0) {
        X509_free(cert);
        OPENSSL_cleanse(password, 33);
        unsigned long e = ERR_peek_last_error();
        util_set_err(err, errlen, "cannot issue the PKCS#12 identity: %s",
                e ? ERR_reason_error_string(e) : "key or certificate generation failed");
        ERR_clear_error();
        return -1;
    }
    /* Hand back a plain malloc buffer so callers free() it like others. */
    unsigned char *copy = malloc((size_t)n);
    if (!copy) {
        OPENSSL_clear_free(buf, (size_t)n);
        X509_free(cert);
        OPENSSL_cleanse(password, 33);
        util_set_err(err, errlen, "out of memory");
        return -1;
    }
    memcpy(copy, buf, (size_t)n);
    OPENSSL_clear_free(buf, (size_t)n);
    *der = copy;
    *der_len = (size_t)n;
    if (cert_out)
        *cert_out = cert;
    else
        X509_free(cert);
    return 0;
}

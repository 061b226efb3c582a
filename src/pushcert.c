/* APNs MDM push certificate tooling: customer CSR, vendor signing into a
 * PushCertWebRequest, and import of the certificate Apple issues.
 *
 * The request format follows Apple's "MDM Vendor CSR Signing Overview":
 * the vendor signs the CSR in binary (DER) form with the private key of the
 * MDM signing certificate ("SHA1WithRSA"), base64-encodes the signature and
 * the CSR, puts them with the PEM certificate chain (signing certificate,
 * WWDR intermediate, Apple Inc. root) into a plist and base64-encodes the
 * plist. That base64 text is the file the customer uploads to the Apple Push
 * Certificates Portal. */
#include "pushcert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

#include "pki.h"
#include "plist.h"
#include "util.h"

/* X.520 upper bound for commonName and organizationName. */
#define NAME_MAX_LEN 64

/* ---- errors ---------------------------------------------------------------- */

static void set_err(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(char **err, const char *fmt, ...)
{
    /* OpenSSL's queue may hold the low-level cause; our message replaces it
     * and a stale entry must not leak into a later, unrelated call. */
    ERR_clear_error();
    if (!err)
        return;
    free(*err);
    *err = NULL;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    *err = s;
}

/* Public entry points start with no message: whatever the caller's pointer
 * held is not ours to free (set_err frees only what this call set). */
static void begin_err(char **err)
{
    if (err)
        *err = NULL;
}

/* Wipes and frees a buffer that may hold key material or a password. */
static void free_secret(void *p, size_t len)
{
    if (p)
        OPENSSL_cleanse(p, len);
    free(p);
}

/* The contents of a memory BIO as a NUL-terminated heap string. BIO memory is
 * not NUL-terminated, so it is copied by length, never with strndup. */
static char *bio_to_string(BIO *bio, size_t *len_out)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n < 0 || (n > 0 && !data))
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    if (n > 0)
        memcpy(s, data, (size_t)n);
    s[n] = '\0';
    if (len_out)
        *len_out = (size_t)n;
    return s;
}

static char *subject_string(X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (bio && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~XN_FLAG_DN_REV & ~ASN1_STRFLGS_ESC_MSB) >= 0)
        s = bio_to_string(bio, NULL);
    BIO_free(bio);
    ERR_clear_error();
    return s ? s : strdup("?");
}

/* ---- reading inputs -------------------------------------------------------- */

/* Reads a whole input file, with an error naming it. */
static unsigned char *read_input(const char *path, const char *what, size_t *len, char **err)
{
    if (!path || !*path) {
        set_err(err, "no file given for the %s", what);
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        set_err(err, "%s: cannot read the %s: %s", path, what, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, "%s: the %s is not a regular file", path, what);
        return NULL;
    }
    if (st.st_size > PUSHCERT_MAX_FILE) {
        set_err(err, "%s: the %s is larger than %d bytes; not a certificate, key or request", path, what,
                PUSHCERT_MAX_FILE);
        return NULL;
    }
    size_t n = 0;
    errno = 0;
    char *buf = util_read_file(path, PUSHCERT_MAX_FILE, &n);
    if (!buf) {
        set_err(err, "%s: cannot read the %s: %s", path, what, errno ? strerror(errno) : "read error");
        return NULL;
    }
    if (n == 0) {
        free(buf);
        set_err(err, "%s: the %s file is empty", path, what);
        return NULL;
    }
    *len = n;
    return (unsigned char *)buf;
}

static int looks_like_pem(const unsigned char *buf, size_t len)
{
    static const char marker[] = "-----BEGIN ";
    return memmem(buf, len, marker, sizeof marker - 1) != NULL;
}

static BIO *mem_bio(const unsigned char *buf, size_t len)
{
    return len <= (size_t)0x7fffffff ? BIO_new_mem_buf(buf, (int)len) : NULL;
}

/* All certificates in a PEM file (one or more blocks) or a single DER
 * certificate (Apple publishes its WWDR and root certificates as DER .cer). */
static STACK_OF(X509) *certs_from_buf(const unsigned char *buf, size_t len, const char *path, const char *what,
                                      char **err)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (!certs) {
        set_err(err, "out of memory");
        return NULL;
    }
    if (looks_like_pem(buf, len)) {
        BIO *bio = mem_bio(buf, len);
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long derlen = 0;
        int bad = 0;
        /* Block by block, so that other PEM blocks in the same file (a key
         * next to the certificate, for instance) are skipped, not errors. */
        while (bio && !bad && PEM_read_bio(bio, &name, &header, &der, &derlen) == 1) {
            if (strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0 ||
                strcmp(name, PEM_STRING_X509_TRUSTED) == 0) {
                const unsigned char *p = der;
                X509 *x = strcmp(name, PEM_STRING_X509_TRUSTED) == 0 ? d2i_X509_AUX(NULL, &p, derlen)
                                                                      : d2i_X509(NULL, &p, derlen);
                if (!x || !sk_X509_push(certs, x)) {
                    X509_free(x);
                    bad = 1;
                }
            }
            OPENSSL_free(name);
            OPENSSL_free(header);
            OPENSSL_free(der);
            name = header = NULL;
            der = NULL;
        }
        /* The loop ends at the end of the input ("no start line") or at a
         * block whose base64 is broken; a broken block must not be dropped
         * silently (a chain would lose a certificate). */
        unsigned long e = ERR_peek_last_error();
        if (!bad && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
            bad = 1;
        BIO_free(bio);
        if (bad) {
            sk_X509_pop_free(certs, X509_free);
            set_err(err, "%s: the %s contains a damaged PEM block", path, what);
            return NULL;
        }
    } else {
        const unsigned char *p = buf;
        X509 *x = len <= 0x7fffffff ? d2i_X509(NULL, &p, (long)len) : NULL;
        if (x && p != buf + len) {
            X509_free(x);
            x = NULL;
        }
        if (x && !sk_X509_push(certs, x)) {
            X509_free(x);
            x = NULL;
        }
    }
    if (sk_X509_num(certs) == 0) {
        sk_X509_pop_free(certs, X509_free);
        set_err(err, "%s: the %s is not a PEM or DER X.509 certificate", path, what);
        return NULL;
    }
    ERR_clear_error();
    return certs;
}

static STACK_OF(X509) *load_certs(const char *path, const char *what, char **err)
{
    size_t len = 0;
    unsigned char *buf = read_input(path, what, &len, err);
    if (!buf)
        return NULL;
    STACK_OF(X509) *certs = certs_from_buf(buf, len, path, what, err);
    free(buf);
    return certs;
}

/* The first certificate of a file. */
static X509 *load_cert(const char *path, const char *what, char **err)
{
    STACK_OF(X509) *certs = load_certs(path, what, err);
    if (!certs)
        return NULL;
    X509 *x = sk_X509_shift(certs);
    sk_X509_pop_free(certs, X509_free);
    return x;
}

typedef struct {
    const char *password;
    int asked;
} pw_ctx_t;

/* PEM password callback: supplies the given password once, never prompts
 * (OpenSSL's default would read the terminal from inside library code). */
static int pem_password(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    pw_ctx_t *c = u;
    c->asked = 1;
    if (!c->password)
        return -1;
    size_t n = strlen(c->password);
    if (size < 0 || n > (size_t)size)
        return -1;
    memcpy(buf, c->password, n);
    return (int)n;
}

/* A private key from PEM (PKCS#1, PKCS#8, encrypted PKCS#8 with password) or
 * DER. */
static EVP_PKEY *load_key(const char *path, const char *what, const char *password, char **err)
{
    size_t len = 0;
    unsigned char *buf = read_input(path, what, &len, err);
    if (!buf)
        return NULL;
    EVP_PKEY *key = NULL;
    pw_ctx_t pw = {password, 0};
    if (looks_like_pem(buf, len)) {
        BIO *bio = mem_bio(buf, len);
        key = bio ? PEM_read_bio_PrivateKey(bio, NULL, pem_password, &pw) : NULL;
        BIO_free(bio);
    } else {
        const unsigned char *p = buf;
        key = len <= 0x7fffffff ? d2i_AutoPrivateKey(NULL, &p, (long)len) : NULL;
    }
    free_secret(buf, len);
    if (!key) {
        if (pw.asked && !password)
            set_err(err, "%s: the %s is encrypted; give its password (--password or ORCHARD_P12_PASSWORD)", path,
                    what);
        else if (pw.asked)
            set_err(err, "%s: cannot decrypt the %s: wrong password?", path, what);
        else
            set_err(err, "%s: the %s is not a PEM or DER private key", path, what);
        return NULL;
    }
    ERR_clear_error();
    return key;
}

static int p12_parse(PKCS12 *p12, const char *pw, EVP_PKEY **key, X509 **cert, STACK_OF(X509) **ca)
{
    *key = NULL;
    *cert = NULL;
    *ca = NULL;
    if (PKCS12_parse(p12, pw, key, cert, ca) == 1)
        return 0;
    /* PKCS12_parse may leave partial results behind on failure. */
    EVP_PKEY_free(*key);
    X509_free(*cert);
    sk_X509_pop_free(*ca, X509_free);
    *key = NULL;
    *cert = NULL;
    *ca = NULL;
    return -1;
}

/* Key, certificate and any extra certificates from a PKCS#12 file. */
static int load_p12(const char *path, const char *password, EVP_PKEY **key_out, X509 **cert_out,
                    STACK_OF(X509) **extra_out, char **err)
{
    size_t len = 0;
    unsigned char *buf = read_input(path, "PKCS#12 file", &len, err);
    if (!buf)
        return -1;
    BIO *bio = mem_bio(buf, len);
    PKCS12 *p12 = bio ? d2i_PKCS12_bio(bio, NULL) : NULL;
    BIO_free(bio);
    free_secret(buf, len);
    if (!p12) {
        set_err(err, "%s: not a PKCS#12 (.p12/.pfx) file", path);
        return -1;
    }
    const char *pw = password ? password : "";
    /* Check the MAC first: it is the one test that tells "wrong password"
     * apart from a damaged or unsupported file. An empty password may be
     * encoded either as no password or as an empty string. */
    if (PKCS12_mac_present(p12) && PKCS12_verify_mac(p12, pw, -1) != 1 &&
        !(*pw == '\0' && PKCS12_verify_mac(p12, NULL, 0) == 1)) {
        PKCS12_free(p12);
        set_err(err, "%s: wrong PKCS#12 password (the file's integrity check failed)", path);
        return -1;
    }
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *extra = NULL;
    int rc = p12_parse(p12, pw, &key, &cert, &extra);
    if (rc != 0) {
        /* Files exported by older macOS Keychain Access encrypt certificates
         * with RC2-40, which OpenSSL 3 only offers in its legacy provider.
         * Load it just for this parse. */
        ERR_clear_error();
        OSSL_PROVIDER *legacy = OSSL_PROVIDER_try_load(NULL, "legacy", 1);
        if (legacy) {
            rc = p12_parse(p12, pw, &key, &cert, &extra);
            OSSL_PROVIDER_unload(legacy);
        }
    }
    PKCS12_free(p12);
    if (rc != 0) {
        set_err(err, "%s: cannot decode the PKCS#12 contents (damaged, or an unsupported encryption algorithm)",
                path);
        return -1;
    }
    if (!key || !cert) {
        EVP_PKEY_free(key);
        X509_free(cert);
        sk_X509_pop_free(extra, X509_free);
        set_err(err, "%s: the PKCS#12 file must hold a private key and its certificate (found %s)", path,
                !key && !cert ? "neither" : !key ? "no private key" : "no certificate for the key");
        return -1;
    }
    ERR_clear_error();
    *key_out = key;
    *cert_out = cert;
    if (extra_out)
        *extra_out = extra;
    else
        sk_X509_pop_free(extra, X509_free);
    return 0;
}

/* ---- writing --------------------------------------------------------------- */

static char *cert_pem(X509 *cert, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s = bio && PEM_write_bio_X509(bio, cert) ? bio_to_string(bio, len) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    return s;
}

/* Writes a new private key file that must not exist yet: O_EXCL closes the
 * window between "does it exist?" and creating it, and the file is 0600
 * from its first byte. */
static int write_new_key(const char *path, EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    int rc = -1, e = ENOMEM;
    char *data = NULL;
    long n = 0;
    if (bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) &&
        (n = BIO_get_mem_data(bio, &data)) > 0 && data) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            e = errno;
        } else {
            rc = fchmod(fd, 0600) == 0 && util_write_all(fd, data, (size_t)n) == 0 && fsync(fd) == 0 ? 0 : -1;
            e = errno;
            if (close(fd) != 0 && rc == 0) {
                rc = -1;
                e = errno;
            }
            if (rc != 0)
                unlink(path);
        }
    }
    BIO_free(bio); /* secure-memory BIO: cleansed on free */
    ERR_clear_error();
    errno = e;
    return rc;
}

/* ---- 1. customer key and CSR ------------------------------------------------ */

static int add_name(X509_NAME *name, const char *field, const char *value)
{
    return X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, (const unsigned char *)value, -1, -1, 0) == 1;
}

int pushcert_csr_generate(const char *cn, const char *org, EVP_PKEY **key_out, X509_REQ **csr_out, char **err)
{
    begin_err(err);
    *key_out = NULL;
    *csr_out = NULL;
    if (!cn || !*cn)
        cn = PUSHCERT_DEFAULT_CN;
    if (strlen(cn) > NAME_MAX_LEN) {
        set_err(err, "the common name is longer than %d characters", NAME_MAX_LEN);
        return -1;
    }
    if (org && strlen(org) > NAME_MAX_LEN) {
        set_err(err, "the organization name is longer than %d characters", NAME_MAX_LEN);
        return -1;
    }
    EVP_PKEY *key = pki_new_rsa_key(PUSHCERT_RSA_BITS);
    if (!key) {
        set_err(err, "RSA-%d key generation failed", PUSHCERT_RSA_BITS);
        return -1;
    }
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = req ? X509_REQ_get_subject_name(req) : NULL;
    int ok = name && X509_REQ_set_version(req, X509_REQ_VERSION_1) == 1;
    ok = ok && add_name(name, "CN", cn);
    if (ok && org && *org)
        ok = add_name(name, "O", org);
    ok = ok && X509_REQ_set_pubkey(req, key) == 1;
    ok = ok && X509_REQ_sign(req, key, EVP_sha256()) > 0;
    if (!ok) {
        X509_REQ_free(req);
        EVP_PKEY_free(key);
        set_err(err, "cannot build the certificate signing request (invalid characters in the name?)");
        return -1;
    }
    ERR_clear_error();
    *key_out = key;
    *csr_out = req;
    return 0;
}

int pushcert_csr_files(const char *key_path, const char *csr_path, const char *cn, const char *org, int force,
                       char **err)
{
    begin_err(err);
    if (!key_path || !*key_path || !csr_path || !*csr_path) {
        set_err(err, "both the key and the CSR output file are required");
        return -1;
    }
    if (strcmp(key_path, csr_path) == 0) {
        set_err(err, "%s: the key and the CSR must go to different files", key_path);
        return -1;
    }
    struct stat st;
    if (!force && lstat(key_path, &st) == 0) {
        set_err(err,
                "%s: already exists; not replacing it. If a CSR made with this key was already signed, the "
                "push certificate Apple issues only works with this key. Choose another file or use --force",
                key_path);
        return -1;
    }
    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    if (pushcert_csr_generate(cn, org, &key, &req, err) != 0)
        return -1;
    int rc = -1;
    char *csr = NULL;
    size_t csr_len = 0;
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_X509_REQ(bio, req) || !(csr = bio_to_string(bio, &csr_len))) {
        set_err(err, "out of memory");
        goto out;
    }
    if ((force ? pki_write_key(key_path, key) : write_new_key(key_path, key)) != 0) {
        set_err(err, "%s: cannot write the private key: %s", key_path, strerror(errno));
        goto out;
    }
    if (util_write_file(csr_path, csr, csr_len, 0644) != 0) {
        int e = errno;
        /* A key without its CSR is of no use: do not leave it behind. */
        unlink(key_path);
        set_err(err, "%s: cannot write the CSR: %s", csr_path, strerror(e));
        goto out;
    }
    rc = 0;
out:
    free(csr);
    BIO_free(bio);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

/* ---- 2. vendor signing ------------------------------------------------------ */

/* The CSR's DER bytes exactly as the customer produced them: Apple's steps
 * sign "the CSR (in binary format)", so PEM input is only unwrapped, never
 * re-encoded. */
static unsigned char *load_csr_der(const char *path, size_t *der_len, char **err)
{
    size_t len = 0;
    unsigned char *buf = read_input(path, "certificate signing request", &len, err);
    if (!buf)
        return NULL;
    unsigned char *der = NULL;
    size_t n = 0;
    if (looks_like_pem(buf, len)) {
        BIO *bio = mem_bio(buf, len);
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        while (!der && bio && PEM_read_bio(bio, &name, &header, &data, &dlen) == 1) {
            if ((strcmp(name, PEM_STRING_X509_REQ) == 0 || strcmp(name, PEM_STRING_X509_REQ_OLD) == 0) &&
                dlen > 0 && (der = malloc((size_t)dlen)) != NULL) {
                memcpy(der, data, (size_t)dlen);
                n = (size_t)dlen;
            }
            OPENSSL_free(name);
            OPENSSL_free(header);
            OPENSSL_free(data);
            name = header = NULL;
            data = NULL;
        }
        BIO_free(bio);
        free(buf);
        if (!der) {
            set_err(err, "%s: no CERTIFICATE REQUEST block found", path);
            return NULL;
        }
    } else {
        der = buf;
        n = len;
    }
    const unsigned char *p = der;
    X509_REQ *req = n <= 0x7fffffff ? d2i_X509_REQ(NULL, &p, (long)n) : NULL;
    const char *problem = NULL;
    if (!req)
        problem = "is not a valid PKCS#10 certificate signing request";
    else if (p != der + n)
        problem = "has trailing data after the certificate signing request";
    else if (X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1)
        problem = "has a self-signature that does not verify (damaged or altered CSR)";
    X509_REQ_free(req);
    if (problem) {
        free(der);
        set_err(err, "%s: %s", path, problem);
        return NULL;
    }
    ERR_clear_error();
    *der_len = n;
    return der;
}

static int cert_signed_by(X509 *child, X509 *parent)
{
    int ok = X509_check_issued(parent, child) == X509_V_OK && X509_verify(child, X509_get0_pubkey(parent)) == 1;
    ERR_clear_error();
    return ok;
}

typedef struct {
    X509 *cert;
    const char *source; /* file it came from */
    int optional;       /* from the vendor PKCS#12: ignore if unrelated */
    int used;
} pool_entry_t;

/* Orders the vendor certificate and the given certificates leaf first, each
 * followed by its issuer, as Apple requires ("a complete certificate chain
 * all the way back to a recognized root certificate (including the root
 * certificate itself)"). Every certificate given in a chain file must belong
 * to that path. */
static STACK_OF(X509) *order_chain(X509 *vendor, pool_entry_t *pool, size_t npool, int *complete, char **err)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    if (!chain || !sk_X509_push(chain, vendor)) {
        sk_X509_free(chain);
        set_err(err, "out of memory");
        return NULL;
    }
    X509_up_ref(vendor);
    /* Duplicates (the vendor certificate repeated in a bundle, the same root
     * given twice) are harmless: mark them used so they are neither appended
     * nor reported. */
    for (size_t i = 0; i < npool; i++) {
        if (X509_cmp(pool[i].cert, vendor) == 0)
            pool[i].used = 1;
        for (size_t j = 0; j < i && !pool[i].used; j++)
            if (X509_cmp(pool[i].cert, pool[j].cert) == 0)
                pool[i].used = 1;
    }
    *complete = 0;
    for (;;) {
        X509 *cur = sk_X509_value(chain, sk_X509_num(chain) - 1);
        if (cert_signed_by(cur, cur)) {
            *complete = 1; /* self-signed: the root */
            break;
        }
        size_t k = npool;
        for (size_t i = 0; i < npool && k == npool; i++)
            if (!pool[i].used && cert_signed_by(cur, pool[i].cert))
                k = i;
        if (k == npool)
            break;
        if (!sk_X509_push(chain, pool[k].cert)) {
            sk_X509_pop_free(chain, X509_free);
            set_err(err, "out of memory");
            return NULL;
        }
        X509_up_ref(pool[k].cert);
        pool[k].used = 1;
    }
    for (size_t i = 0; i < npool; i++) {
        if (!pool[i].used && !pool[i].optional) {
            char *s = subject_string(X509_get_subject_name(pool[i].cert));
            char *v = subject_string(X509_get_subject_name(vendor));
            set_err(err,
                    "%s: certificate \"%s\" is not on the issuing path of the vendor certificate \"%s\" "
                    "(wrong file, or an intermediate is missing)",
                    pool[i].source, s, v);
            free(s);
            free(v);
            sk_X509_pop_free(chain, X509_free);
            return NULL;
        }
    }
    return chain;
}

char *pushcert_request_plist(const unsigned char *csr_der, size_t csr_len, EVP_PKEY *vendor_key,
                             STACK_OF(X509) *chain, pushcert_sig_t sig, size_t *xml_len, char **err)
{
    begin_err(err);
    if (!csr_der || csr_len == 0 || !vendor_key || !chain || sk_X509_num(chain) < 1) {
        set_err(err, "the request needs a CSR, the vendor key and at least the vendor certificate");
        return NULL;
    }
    if (!EVP_PKEY_is_a(vendor_key, "RSA")) {
        set_err(err, "the MDM vendor key must be an RSA key (Apple specifies SHA1WithRSA signatures)");
        return NULL;
    }
    char *xml = NULL, *csr_b64 = NULL, *sig_b64 = NULL, *pem = NULL;
    unsigned char *sigbuf = NULL;
    size_t siglen = 0, pem_len = 0;
    BIO *bio = BIO_new(BIO_s_mem());
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    plist_t *dict = NULL;

    /* Signature over the CSR's DER bytes with the vendor's private key:
     * RSASSA-PKCS1-v1_5 with SHA-1 ("SHA1WithRSA", as Apple's documentation
     * specifies) or SHA-256. */
    const EVP_MD *md = sig == PUSHCERT_SIG_SHA256 ? EVP_sha256() : EVP_sha1();
    if (!ctx || EVP_DigestSignInit(ctx, NULL, md, NULL, vendor_key) != 1 ||
        EVP_DigestSign(ctx, NULL, &siglen, csr_der, csr_len) != 1 || !(sigbuf = malloc(siglen)) ||
        EVP_DigestSign(ctx, sigbuf, &siglen, csr_der, csr_len) != 1) {
        set_err(err, "signing the CSR with the vendor key failed");
        goto out;
    }
    /* The chain as PEM text, leaf first. OpenSSL writes 64 characters per
     * line, which is the formatting Apple's portal insists on. */
    for (int i = 0; bio && i < sk_X509_num(chain); i++) {
        if (!PEM_write_bio_X509(bio, sk_X509_value(chain, i))) {
            set_err(err, "cannot encode the certificate chain");
            goto out;
        }
    }
    csr_b64 = util_base64_encode(csr_der, csr_len);
    sig_b64 = util_base64_encode(sigbuf, siglen);
    pem = bio ? bio_to_string(bio, &pem_len) : NULL;
    dict = plist_new_dict();
    if (!csr_b64 || !sig_b64 || !pem || !dict ||
        plist_dict_set(dict, "PushCertRequestCSR", plist_new_string(csr_b64)) != 0 ||
        plist_dict_set(dict, "PushCertCertificateChain", plist_new_string(pem)) != 0 ||
        plist_dict_set(dict, "PushCertSignature", plist_new_string(sig_b64)) != 0 ||
        !(xml = plist_to_xml(dict, xml_len))) {
        set_err(err, "out of memory building the request plist");
        goto out;
    }
out:
    plist_free(dict);
    free(pem);
    free(csr_b64);
    free(sig_b64);
    free(sigbuf);
    EVP_MD_CTX_free(ctx);
    BIO_free(bio);
    ERR_clear_error();
    return xml;
}

void pushcert_sign_result_clear(pushcert_sign_result_t *res)
{
    if (!res)
        return;
    free(res->request_b64);
    memset(res, 0, sizeof *res);
}

int pushcert_sign(const pushcert_sign_opts_t *o, pushcert_sign_result_t *res, char **err)
{
    begin_err(err);
    memset(res, 0, sizeof *res);
    if (!o || (!o->vendor_p12_path && (!o->vendor_cert_path || !o->vendor_key_path))) {
        set_err(err, "the vendor identity is required: the vendor certificate and key, or a PKCS#12 file");
        return -1;
    }
    if (o->vendor_p12_path && (o->vendor_cert_path || o->vendor_key_path)) {
        set_err(err, "give either the vendor PKCS#12 file or the vendor certificate and key, not both");
        return -1;
    }
    if (o->nchain > 0 && !o->chain_paths) {
        set_err(err, "internal error: chain count without paths");
        return -1;
    }
    int rc = -1;
    size_t csr_len = 0;
    unsigned char *csr = NULL;
    EVP_PKEY *key = NULL;
    X509 *vendor = NULL;
    STACK_OF(X509) *p12_extra = NULL, *chain = NULL;
    STACK_OF(X509) **files = NULL;
    pool_entry_t *pool = NULL;
    size_t npool = 0;
    char *xml = NULL;
    size_t xml_len = 0;
    const char *vendor_src = o->vendor_p12_path ? o->vendor_p12_path : o->vendor_cert_path;

    if (!(csr = load_csr_der(o->csr_path, &csr_len, err)))
        goto out;
    if (o->vendor_p12_path) {
        if (load_p12(o->vendor_p12_path, o->password, &key, &vendor, &p12_extra, err) != 0)
            goto out;
    } else {
        if (!(vendor = load_cert(o->vendor_cert_path, "vendor certificate", err)) ||
            !(key = load_key(o->vendor_key_path, "vendor private key", o->password, err)))
            goto out;
    }
    if (X509_check_private_key(vendor, key) != 1) {
        set_err(err, "%s: the vendor private key does not belong to the vendor certificate%s%s", vendor_src,
                o->vendor_key_path ? " in " : "", o->vendor_key_path ? o->vendor_key_path : "");
        goto out;
    }
    if (!EVP_PKEY_is_a(key, "RSA")) {
        set_err(err, "%s: the vendor key is not RSA; Apple specifies SHA1WithRSA signatures", vendor_src);
        goto out;
    }

    /* Everything that may belong to the chain, with where it came from. */
    size_t cap = (size_t)(p12_extra ? sk_X509_num(p12_extra) : 0);
    if (o->nchain > 0 && !(files = calloc(o->nchain, sizeof *files))) {
        set_err(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < o->nchain; i++) {
        if (!(files[i] = load_certs(o->chain_paths[i], "chain certificate", err)))
            goto out;
        cap += (size_t)sk_X509_num(files[i]);
    }
    if (cap > 0 && !(pool = calloc(cap, sizeof *pool))) {
        set_err(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < o->nchain; i++)
        for (int j = 0; j < sk_X509_num(files[i]); j++)
            pool[npool++] = (pool_entry_t){sk_X509_value(files[i], j), o->chain_paths[i], 0, 0};
    for (int j = 0; p12_extra && j < sk_X509_num(p12_extra); j++)
        pool[npool++] = (pool_entry_t){sk_X509_value(p12_extra, j), o->vendor_p12_path, 1, 0};

    int complete = 0;
    if (!(chain = order_chain(vendor, pool, npool, &complete, err)))
        goto out;
    if (!(xml = pushcert_request_plist(csr, csr_len, key, chain, o->sig, &xml_len, err)))
        goto out;
    /* "Create a Push Certificate Request plist and Base64 encode it." */
    if (!(res->request_b64 = util_base64_encode((const unsigned char *)xml, xml_len))) {
        set_err(err, "out of memory");
        goto out;
    }
    res->request_len = strlen(res->request_b64);
    res->chain_len = sk_X509_num(chain);
    res->chain_complete = complete;
    rc = 0;
out:
    free(xml);
    free(pool);
    for (size_t i = 0; files && i < o->nchain; i++)
        sk_X509_pop_free(files[i], X509_free);
    free(files);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(p12_extra, X509_free);
    X509_free(vendor);
    EVP_PKEY_free(key);
    free(csr);
    ERR_clear_error();
    return rc;
}

/* ---- 3. import and inspection ---------------------------------------------- */

void pushcert_info_clear(pushcert_info_t *info)
{
    if (!info)
        return;
    free(info->topic);
    free(info->subject);
    free(info->not_after);
    memset(info, 0, sizeof *info);
}

/* A topic is printed in messages and put into profiles: only visible ASCII,
 * so a crafted certificate cannot smuggle terminal escapes or XML into
 * either. */
static int topic_chars_ok(const char *t)
{
    for (; *t; t++)
        if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7e)
            return 0;
    return 1;
}

/* The subject's UID as a heap string: NULL with *count = 0 when absent. */
static char *subject_uid(X509 *cert, int *count)
{
    X509_NAME *n = X509_get_subject_name(cert);
    *count = 0;
    int first = -1;
    for (int i = X509_NAME_get_index_by_NID(n, NID_userId, -1); i >= 0;
         i = X509_NAME_get_index_by_NID(n, NID_userId, i)) {
        if (first < 0)
            first = i;
        (*count)++;
    }
    if (first < 0)
        return NULL;
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, first)));
    char *s = NULL;
    /* Copied by length: the UTF-8 buffer may contain a NUL, which would make
     * the topic silently shorter than what the certificate says. */
    if (len >= 0 && !memchr(utf8, '\0', (size_t)len) && (s = malloc((size_t)len + 1)) != NULL) {
        memcpy(s, utf8, (size_t)len);
        s[len] = '\0';
    }
    OPENSSL_free(utf8);
    ERR_clear_error();
    return s;
}

int pushcert_inspect(X509 *cert, int64_t now, pushcert_info_t *info, char **err)
{
    begin_err(err);
    memset(info, 0, sizeof *info);
    if (!cert) {
        set_err(err, "no certificate");
        return -1;
    }
    info->subject = subject_string(X509_get_subject_name(cert));
    int count = 0;
    char *uid = subject_uid(cert, &count);
    if (count == 0) {
        set_err(err, "the certificate's subject (%s) has no UID attribute, so it carries no push topic: "
                     "this is not an MDM push certificate from the Apple Push Certificates Portal",
                info->subject ? info->subject : "?");
        goto fail;
    }
    if (count > 1 || !uid) {
        set_err(err, "the certificate's subject (%s) has %s UID attribute; cannot tell the push topic",
                info->subject ? info->subject : "?", count > 1 ? "more than one" : "an unreadable");
        goto fail;
    }
    if (!topic_chars_ok(uid)) {
        set_err(err, "the certificate's topic (subject UID) contains characters other than visible ASCII: "
                     "not an MDM push topic");
        goto fail;
    }
    if (strncmp(uid, PUSHCERT_TOPIC_PREFIX, strlen(PUSHCERT_TOPIC_PREFIX)) != 0 ||
        strlen(uid) == strlen(PUSHCERT_TOPIC_PREFIX)) {
        set_err(err, "the certificate's topic (subject UID) is \"%s\", but an MDM push topic starts with \"%s\": "
                     "this is an APNs certificate for something else, not for MDM",
                uid, PUSHCERT_TOPIC_PREFIX);
        goto fail;
    }
    info->topic = uid;
    uid = NULL;

    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) {
        set_err(err, "the certificate's notAfter date is malformed");
        goto fail;
    }
    time_t na = timegm(&tm);
    char when[40];
    if (strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0 || !(info->not_after = strdup(when))) {
        set_err(err, "out of memory");
        goto fail;
    }
    info->not_after_unix = (int64_t)na;
    int64_t left = info->not_after_unix - now;
    /* Whole days, rounded toward "less time left" so that a certificate
     * expiring in 23 hours says 0 days, and one that expired an hour ago -1. */
    info->days_left = (long)(left >= 0 ? left / 86400 : -((-left + 86399) / 86400));
    info->expired = left <= 0;
    info->expiring = info->expired || left < (int64_t)PUSHCERT_WARN_DAYS * 86400;
    ERR_clear_error();
    return 0;
fail:
    free(uid);
    pushcert_info_clear(info);
    return -1;
}

/* Renames staged files into place; the key first, so that at no point does
 * push.pem name a certificate whose key is missing. */
static int install_pair(const char *key_tmp, const char *key_path, const char *pem_tmp, const char *pem_path,
                        char **err)
{
    if (rename(key_tmp, key_path) != 0) {
        set_err(err, "%s: cannot install the private key: %s", key_path, strerror(errno));
        return -1;
    }
    if (rename(pem_tmp, pem_path) != 0) {
        set_err(err, "%s: cannot install the certificate: %s (%s was already replaced; run the import again)",
                pem_path, strerror(errno), key_path);
        return -1;
    }
    return 0;
}

int pushcert_import(const pushcert_import_opts_t *o, pushcert_info_t *info, char **err)
{
    begin_err(err);
    memset(info, 0, sizeof *info);
    if (!o || !o->data_dir || !*o->data_dir) {
        set_err(err, "no data directory given");
        return -1;
    }
    if (!o->p12_path && (!o->cert_path || !o->key_path)) {
        set_err(err, "give the push certificate and its key, or a PKCS#12 file");
        return -1;
    }
    if (o->p12_path && (o->cert_path || o->key_path)) {
        set_err(err, "give either a PKCS#12 file or the certificate and key, not both");
        return -1;
    }
    int rc = -1;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL, *old = NULL;
    char *pem = NULL, *old_topic = NULL;
    char *pem_path = util_strdup_printf("%s/push.pem", o->data_dir);
    char *key_path = util_strdup_printf("%s/push.key", o->data_dir);
    char *pem_tmp = util_strdup_printf("%s/push.pem.new", o->data_dir);
    char *key_tmp = util_strdup_printf("%s/push.key.new", o->data_dir);
    const char *src = o->p12_path ? o->p12_path : o->cert_path;
    size_t pem_len = 0;
    int staged = 0;
    if (!pem_path || !key_path || !pem_tmp || !key_tmp) {
        set_err(err, "out of memory");
        goto out;
    }

    if (o->p12_path) {
        if (load_p12(o->p12_path, o->password, &key, &cert, NULL, err) != 0)
            goto out;
    } else {
        if (!(cert = load_cert(o->cert_path, "push certificate", err)) ||
            !(key = load_key(o->key_path, "push certificate's private key", o->password, err)))
            goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        if (o->p12_path)
            set_err(err, "%s: the private key does not match the certificate", src);
        else
            set_err(err,
                    "%s: the certificate does not match the private key in %s (use the key made together with "
                    "the CSR you uploaded to Apple)",
                    src, o->key_path);
        goto out;
    }
    char *why = NULL;
    if (pushcert_inspect(cert, util_now(), info, &why) != 0) {
        set_err(err, "%s: %s", src, why ? why : "not a push certificate");
        free(why);
        goto out;
    }

    /* Apple keeps a customer's topic across renewals; enrolled devices are
     * bound to it (the profile's Topic). A different topic means a different
     * (new, not renewed) certificate, which would orphan every enrolled
     * device, so it needs an explicit --force. */
    struct stat st;
    if (lstat(pem_path, &st) == 0) {
        info->replaced = 1;
        int n = 0;
        char *e2 = NULL;
        old = load_cert(pem_path, "existing push certificate", &e2);
        old_topic = old ? subject_uid(old, &n) : NULL;
        if (old_topic && !topic_chars_ok(old_topic)) {
            free(old_topic);
            old_topic = NULL;
        }
        if (!o->force && !old_topic) {
            set_err(err, "%s: exists but its topic cannot be read (%s); use --force to replace it", pem_path,
                    e2 ? e2 : "no UID in its subject");
            free(e2);
            goto out;
        }
        free(e2);
        if (!o->force && strcmp(old_topic, info->topic) != 0) {
            set_err(err,
                    "%s: the installed push certificate has topic %s, the new one %s. Apple requires a renewal "
                    "to keep the same topic: devices enrolled with %s would stop receiving pushes and must be "
                    "re-enrolled. Renew the existing certificate in the Apple Push Certificates Portal "
                    "(Renew, not Create a Certificate), or use --force to replace it anyway",
                    pem_path, old_topic, info->topic, old_topic);
            goto out;
        }
    } else if (errno != ENOENT) {
        set_err(err, "%s: %s", pem_path, strerror(errno));
        goto out;
    }

    if (mkdir(o->data_dir, 0700) != 0 && errno != EEXIST) {
        set_err(err, "%s: cannot create the data directory: %s", o->data_dir, strerror(errno));
        goto out;
    }
    if (!(pem = cert_pem(cert, &pem_len))) {
        set_err(err, "out of memory");
        goto out;
    }
    /* Both files are staged first, then renamed into place, so a failure
     * while writing leaves the previous pair untouched. pki_write_key creates
     * the key 0600 from its first byte. */
    staged = 1;
    if (pki_write_key(key_tmp, key) != 0) {
        set_err(err, "%s: cannot write the private key: %s", key_tmp, strerror(errno));
        goto out;
    }
    if (util_write_file(pem_tmp, pem, pem_len, 0644) != 0) {
        set_err(err, "%s: cannot write the certificate: %s", pem_tmp, strerror(errno));
        goto out;
    }
    if (install_pair(key_tmp, key_path, pem_tmp, pem_path, err) != 0)
        goto out;
    rc = 0;
out:
    if (staged) {
        unlink(key_tmp); /* no-ops once renamed */
        unlink(pem_tmp);
    }
    if (rc != 0)
        pushcert_info_clear(info);
    free(pem);
    free(old_topic);
    X509_free(old);
    X509_free(cert);
    EVP_PKEY_free(key);
    free(pem_path);
    free(key_path);
    free(pem_tmp);
    free(key_tmp);
    ERR_clear_error();
    return rc;
}

int pushcert_show(const char *data_dir, pushcert_info_t *info, char **err)
{
    begin_err(err);
    memset(info, 0, sizeof *info);
    if (!data_dir || !*data_dir) {
        set_err(err, "no data directory given");
        return -1;
    }
    char *path = util_strdup_printf("%s/push.pem", data_dir);
    if (!path) {
        set_err(err, "out of memory");
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        set_err(err, "%s: no push certificate installed; import one with `orchard pushcert import`", path);
        free(path);
        return -1;
    }
    int rc = -1;
    X509 *cert = load_cert(path, "push certificate", err);
    if (cert) {
        char *why = NULL;
        rc = pushcert_inspect(cert, util_now(), info, &why);
        if (rc != 0) {
            set_err(err, "%s: %s", path, why ? why : "not a push certificate");
            free(why);
        }
    }
    X509_free(cert);
    free(path);
    return rc;
}

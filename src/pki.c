/* Keys and certificates: orchard's CA, its TLS server certificate, and
 * issuing certificates. OpenSSL 3 APIs only. */
#include "pki.h"

#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define CA_DAYS 3650
#define TLS_DAYS 825
#define MAX_DAYS (100 * 366)

/* ---- keys --------------------------------------------------------------- */

EVP_PKEY *pki_new_rsa_key(int bits)
{
    if (bits < 2048 || bits > 16384)
        return NULL;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    if (!k)
        ERR_clear_error();
    return k;
}

EVP_PKEY *pki_new_ec_key(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!k)
        ERR_clear_error();
    return k;
}

/* ---- issuing ------------------------------------------------------------ */

/* A DNS name we are willing to put in a SAN: LDH labels, '_' and a leading
 * wildcard label; no spaces, commas or anything else. */
static int valid_dns_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_')
            continue;
        if (c == '*' && i == 0 && n > 2 && s[1] == '.')
            continue;
        return 0;
    }
    return 1;
}

/* Parses an IPv4/IPv6 literal (IPv6 optionally in brackets). Returns the
 * address length (4 or 16), or 0 if `s` is not an IP literal. */
static int parse_ip(const char *s, unsigned char out[16])
{
    if (inet_pton(AF_INET, s, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, s, out) == 1)
        return 16;
    size_t n = strlen(s);
    if (n > 2 && n < 64 && s[0] == '[' && s[n - 1] == ']') {
        char tmp[64];
        memcpy(tmp, s + 1, n - 2);
        tmp[n - 2] = '\0';
        if (inet_pton(AF_INET6, tmp, out) == 1)
            return 16;
    }
    return 0;
}

static int add_general_name(GENERAL_NAMES *gens, const char *san)
{
    unsigned char ip[16];
    int iplen = parse_ip(san, ip);
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (!gn)
        return -1;
    if (iplen > 0) {
        ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
        if (!os || !ASN1_OCTET_STRING_set(os, ip, iplen)) {
            ASN1_OCTET_STRING_free(os);
            GENERAL_NAME_free(gn);
            return -1;
        }
        GENERAL_NAME_set0_value(gn, GEN_IPADD, os);
    } else {
        if (!valid_dns_name(san)) {
            GENERAL_NAME_free(gn);
            return -1;
        }
        ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
        if (!ia5 || !ASN1_STRING_set(ia5, san, (int)strlen(san))) {
            ASN1_IA5STRING_free(ia5);
            GENERAL_NAME_free(gn);
            return -1;
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    }
    if (!sk_GENERAL_NAME_push(gens, gn)) {
        GENERAL_NAME_free(gn);
        return -1;
    }
    return 0;
}

static int add_sans(X509 *x, const char *const *sans, size_t nsans)
{
    if (nsans == 0)
        return 0;
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    if (!gens)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < nsans && rc == 0; i++)
        rc = sans[i] ? add_general_name(gens, sans[i]) : -1;
    if (rc == 0 && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
        rc = -1;
    GENERAL_NAMES_free(gens);
    return rc;
}

int pki_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

int pki_set_random_serial(X509 *x)
{
    unsigned char buf[16];
    if (RAND_bytes(buf, sizeof buf) != 1)
        return -1;
    buf[15] |= 1; /* never zero */
    BIGNUM *bn = BN_bin2bn(buf, sizeof buf, NULL);
    ASN1_INTEGER *serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    int rc = serial && X509_set_serialNumber(x, serial) ? 0 : -1;
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return rc;
}

static const EVP_MD *signing_digest(EVP_PKEY *key)
{
    /* Ed25519/Ed448 sign without a separate digest. */
    if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448"))
        return NULL;
    return EVP_sha256();
}

X509 *pki_issue_cert(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *subject_key, const char *common_name,
                     int days, pki_usage_t usage, const char *const *sans, size_t nsans)
{
    if (!ca_key || !subject_key || !common_name || !*common_name || (nsans > 0 && !sans) ||
        days < -MAX_DAYS || days > MAX_DAYS)
        return NULL;
    if (usage != PKI_USAGE_CA && usage != PKI_USAGE_SERVER && usage != PKI_USAGE_CLIENT)
        return NULL;
    if (ca ? X509_check_private_key(ca, ca_key) != 1 : EVP_PKEY_eq(ca_key, subject_key) != 1) {
        ERR_clear_error();
        return NULL; /* signing key does not belong to the issuer */
    }

    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    int ok = x && name;
    ok = ok && X509_set_version(x, X509_VERSION_3);
    ok = ok && pki_set_random_serial(x) == 0;
    ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)common_name,
                                          -1, -1, 0);
    ok = ok && X509_set_subject_name(x, name);
    ok = ok && X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name);
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL;
    ok = ok && X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) != NULL;
    ok = ok && X509_set_pubkey(x, subject_key);

    X509V3_CTX ctx;
    memset(&ctx, 0, sizeof ctx);
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, ca ? ca : x, x, NULL, NULL, 0);

    int rsa = EVP_PKEY_is_a(subject_key, "RSA");
    if (ok) {
        switch (usage) {
        case PKI_USAGE_CA:
            ok = pki_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
                 pki_add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") == 0;
            break;
        case PKI_USAGE_SERVER:
            ok = pki_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
                 pki_add_ext(x, &ctx, NID_key_usage,
                         rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature") ==
                     0 &&
                 pki_add_ext(x, &ctx, NID_ext_key_usage, "serverAuth") == 0;
            break;
        case PKI_USAGE_CLIENT:
            /* keyEncipherment only makes sense for RSA keys (RFC 5480 s.3). */
            ok = pki_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
                 pki_add_ext(x, &ctx, NID_key_usage,
                         rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature") ==
                     0 &&
                 pki_add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") == 0;
            break;
        }
    }
    ok = ok && pki_add_ext(x, &ctx, NID_subject_key_identifier, "hash") == 0;
    if (ok && ca)
        ok = pki_add_ext(x, &ctx, NID_authority_key_identifier, "keyid,issuer") == 0;
    ok = ok && add_sans(x, sans, nsans) == 0;
    ok = ok && X509_sign(x, ca_key, signing_digest(ca_key)) > 0;

    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        ERR_clear_error();
        return NULL;
    }
    return x;
}

/* ---- loading ------------------------------------------------------------ */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1; /* never prompt on a terminal for an encrypted key */
}

X509 *pki_load_cert(const char *path)
{
    if (!path)
        return NULL;
    BIO *bio = BIO_new_file(path, "r");
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (!x)
        ERR_clear_error();
    return x;
}

STACK_OF(X509) *pki_load_cert_bundle(const char *path)
{
    if (!path)
        return NULL;
    BIO *bio = BIO_new_file(path, "r");
    if (!bio) {
        ERR_clear_error();
        return NULL;
    }
    STACK_OF(X509) *certs = sk_X509_new_null();
    X509 *x;
    while (certs && (x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
        if (!sk_X509_push(certs, x)) {
            X509_free(x);
            sk_X509_pop_free(certs, X509_free);
            certs = NULL;
        }
    }
    /* The loop ends at end of input (PEM "no start line") or on a broken
     * certificate block; the latter makes the whole bundle invalid. */
    unsigned long e = ERR_peek_last_error();
    int clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    ERR_clear_error();
    BIO_free(bio);
    if (certs && (!clean_end || sk_X509_num(certs) == 0)) {
        sk_X509_pop_free(certs, X509_free);
        certs = NULL;
    }
    return certs;
}

EVP_PKEY *pki_load_key(const char *path)
{
    if (!path)
        return NULL;
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (!k)
        ERR_clear_error();
    return k;
}

/* ---- writing ------------------------------------------------------------ */

/* Writes data to path with exactly `mode`. Goes through a temporary file in
 * the same directory, so readers never see a partial file. With no_clobber
 * an existing path is never replaced (fails with EEXIST). errno on failure. */
static int write_file_mode(const char *path, const void *data, size_t len, mode_t mode, int no_clobber)
{
    char *tmp = util_strdup_printf("%s.XXXXXX", path);
    if (!tmp) {
        errno = ENOMEM;
        return -1;
    }
    int fd = mkstemp(tmp); /* O_EXCL, mode 0600 */
    if (fd < 0) {
        int e = errno;
        free(tmp);
        errno = e;
        return -1;
    }
    int rc = 0;
    if (fchmod(fd, mode) != 0 || util_write_all(fd, data, len) != 0 || fsync(fd) != 0)
        rc = -1;
    int e = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc == 0) {
        if (!no_clobber) {
            if (rename(tmp, path) != 0) {
                rc = -1;
                e = errno;
            }
        } else if (link(tmp, path) != 0) {
            e = errno;
            rc = -1;
            if (e == EPERM || e == ENOTSUP || e == ENOSYS || e == EXDEV || e == EMLINK) {
                /* No hard links here: exclusive create, then write in place. */
                int fd2 = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
                if (fd2 >= 0) {
                    rc = 0;
                    if (fchmod(fd2, mode) != 0 || util_write_all(fd2, data, len) != 0 || fsync(fd2) != 0)
                        rc = -1;
                    e = errno;
                    close(fd2);
                    if (rc != 0)
                        unlink(path);
                } else {
                    e = errno;
                }
            }
        }
    }
    unlink(tmp);
    free(tmp);
    errno = e;
    return rc;
}

static int write_bio_contents(const char *path, BIO *bio, mode_t mode, int no_clobber)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || !data) {
        errno = EINVAL;
        return -1;
    }
    return write_file_mode(path, data, (size_t)n, mode, no_clobber);
}

static int write_cert_file(const char *path, X509 *cert, int no_clobber)
{
    if (!path || !cert) {
        errno = EINVAL;
        return -1;
    }
    BIO *bio = BIO_new(BIO_s_mem());
    int rc = -1;
    if (bio && PEM_write_bio_X509(bio, cert))
        rc = write_bio_contents(path, bio, 0644, no_clobber);
    else
        errno = ENOMEM;
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

static int write_key_file(const char *path, EVP_PKEY *key, int no_clobber)
{
    if (!path || !key) {
        errno = EINVAL;
        return -1;
    }
    /* Secure memory if a secure heap was set up; either way the buffer is
     * cleansed when the BIO is freed. */
    BIO *bio = BIO_new(BIO_s_secmem());
    int rc = -1;
    if (bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
        rc = write_bio_contents(path, bio, 0600, no_clobber);
    else
        errno = ENOMEM;
    int e = errno;
    BIO_free(bio);
    ERR_clear_error();
    errno = e;
    return rc;
}

int pki_write_cert(const char *path, X509 *cert)
{
    return write_cert_file(path, cert, 0);
}

int pki_write_key(const char *path, EVP_PKEY *key)
{
    return write_key_file(path, key, 0);
}

int pki_cert_sha256_hex(X509 *cert, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!cert || !out || X509_digest(cert, EVP_sha256(), md, &len) != 1 || len != 32) {
        ERR_clear_error();
        return -1;
    }
    util_hex(md, len, out);
    return 0;
}

/* ---- bootstrap ---------------------------------------------------------- */

/* 1 if path exists, 0 if it does not, -1 (errno) if we cannot tell. */
static int file_exists(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return 1;
    return errno == ENOENT ? 0 : -1;
}

static char *load_error(const char *path, const char *what)
{
    if (access(path, R_OK) != 0)
        return util_strdup_printf("%s: cannot read: %s", path, strerror(errno));
    return util_strdup_printf("%s: not a valid PEM %s", path, what);
}

static int same_name(const char *a, const char *b)
{
    unsigned char ia[16], ib[16];
    int la = parse_ip(a, ia), lb = parse_ip(b, ib);
    if (la || lb)
        return la == lb && memcmp(ia, ib, (size_t)la) == 0;
    return strcasecmp(a, b) == 0;
}

/* Issues tls.pem for tls_key, signed by the CA. */
static X509 *issue_tls_cert(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *tls_key, const char *host)
{
    const char *cands[] = {host, "localhost", "127.0.0.1", "::1"};
    const char *sans[4];
    size_t n = 0;
    for (size_t i = 0; i < 4; i++) {
        int dup = 0;
        for (size_t j = 0; j < n; j++)
            dup |= same_name(sans[j], cands[i]);
        if (!dup)
            sans[n++] = cands[i];
    }
    /* commonName is limited to 64 characters; the SAN is what clients check. */
    const char *cn = strlen(host) <= 64 ? host : "orchard server";
    return pki_issue_cert(ca, ca_key, tls_key, cn, TLS_DAYS, PKI_USAGE_SERVER, sans, n);
}

int pki_bootstrap(const char *data_dir, const char *host, char **err)
{
    char *dummy = NULL;
    if (!err)
        err = &dummy;
    *err = NULL;
    if (!data_dir || !*data_dir) {
        *err = util_strdup_printf("data directory is not set");
        return -1;
    }
    if (!host || !*host) {
        *err = util_strdup_printf("%s: host name for the TLS certificate is empty", data_dir);
        return -1;
    }
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        *err = util_strdup_printf("%s: cannot create directory: %s", data_dir, strerror(errno));
        return -1;
    }

    int rc = -1;
    char *ca_key_path = util_strdup_printf("%s/ca.key", data_dir);
    char *ca_pem_path = util_strdup_printf("%s/ca.pem", data_dir);
    char *tls_key_path = util_strdup_printf("%s/tls.key", data_dir);
    char *tls_pem_path = util_strdup_printf("%s/tls.pem", data_dir);
    EVP_PKEY *ca_key = NULL, *tls_key = NULL;
    X509 *ca = NULL, *tls = NULL;

    if (!ca_key_path || !ca_pem_path || !tls_key_path || !tls_pem_path) {
        *err = util_strdup_printf("out of memory");
        goto out;
    }

    const char *paths[4] = {ca_key_path, ca_pem_path, tls_key_path, tls_pem_path};
    int have[4];
    for (int i = 0; i < 4; i++) {
        have[i] = file_exists(paths[i]);
        if (have[i] < 0) {
            *err = util_strdup_printf("%s: cannot stat: %s", paths[i], strerror(errno));
            goto out;
        }
    }
    int have_ca_key = have[0], have_ca_pem = have[1], have_tls_key = have[2], have_tls_pem = have[3];
    int need_tls = !have_tls_key || !have_tls_pem;

    if (have_tls_pem && !have_tls_key) {
        *err = util_strdup_printf("%s: exists but %s is missing; remove it to issue a new TLS certificate",
                                  tls_pem_path, tls_key_path);
        goto out;
    }
    if (have_ca_pem && !have_ca_key) {
        if (!need_tls) {
            rc = 0; /* CA key kept offline, TLS already issued: nothing to do */
            goto out;
        }
        *err = util_strdup_printf("%s: missing, cannot sign a TLS certificate with %s", ca_key_path,
                                  ca_pem_path);
        goto out;
    }

    /* CA */
    if (have_ca_key) {
        if (!have_ca_pem || need_tls) {
            ca_key = pki_load_key(ca_key_path);
            if (!ca_key) {
                *err = load_error(ca_key_path, "private key");
                goto out;
            }
        }
    } else {
        ca_key = pki_new_rsa_key(2048);
        if (!ca_key) {
            *err = util_strdup_printf("%s: RSA key generation failed", ca_key_path);
            goto out;
        }
        if (write_key_file(ca_key_path, ca_key, 1) != 0) {
            *err = util_strdup_printf("%s: cannot write: %s", ca_key_path, strerror(errno));
            goto out;
        }
    }
    if (have_ca_pem) {
        if (need_tls) {
            ca = pki_load_cert(ca_pem_path);
            if (!ca) {
                *err = load_error(ca_pem_path, "certificate");
                goto out;
            }
            if (X509_check_private_key(ca, ca_key) != 1) {
                ERR_clear_error();
                *err = util_strdup_printf("%s: does not match the private key in %s", ca_pem_path,
                                          ca_key_path);
                goto out;
            }
        }
    } else {
        char suffix[9];
        if (util_random_hex(suffix, 4) != 0) {
            *err = util_strdup_printf("%s: random number generator failed", ca_pem_path);
            goto out;
        }
        char cn[32];
        snprintf(cn, sizeof cn, "orchard CA %s", suffix);
        ca = pki_issue_cert(NULL, ca_key, ca_key, cn, CA_DAYS, PKI_USAGE_CA, NULL, 0);
        if (!ca) {
            *err = util_strdup_printf("%s: cannot issue the CA certificate", ca_pem_path);
            goto out;
        }
        if (write_cert_file(ca_pem_path, ca, 1) != 0) {
            *err = util_strdup_printf("%s: cannot write: %s", ca_pem_path, strerror(errno));
            goto out;
        }
    }

    /* TLS server certificate */
    if (need_tls) {
        if (have_tls_key) {
            tls_key = pki_load_key(tls_key_path);
            if (!tls_key) {
                *err = load_error(tls_key_path, "private key");
                goto out;
            }
        } else {
            tls_key = pki_new_ec_key();
            if (!tls_key) {
                *err = util_strdup_printf("%s: EC key generation failed", tls_key_path);
                goto out;
            }
            if (write_key_file(tls_key_path, tls_key, 1) != 0) {
                *err = util_strdup_printf("%s: cannot write: %s", tls_key_path, strerror(errno));
                goto out;
            }
        }
        tls = issue_tls_cert(ca, ca_key, tls_key, host);
        if (!tls) {
            *err = util_strdup_printf("%s: cannot issue a TLS certificate for \"%s\" (invalid host name?)",
                                      tls_pem_path, host);
            goto out;
        }
        if (write_cert_file(tls_pem_path, tls, 1) != 0) {
            *err = util_strdup_printf("%s: cannot write: %s", tls_pem_path, strerror(errno));
            goto out;
        }
    }
    rc = 0;

out:
    if (rc != 0 && !*err)
        *err = util_strdup_printf("%s: PKI bootstrap failed", data_dir);
    X509_free(tls);
    X509_free(ca);
    EVP_PKEY_free(tls_key);
    EVP_PKEY_free(ca_key);
    free(ca_key_path);
    free(ca_pem_path);
    free(tls_key_path);
    free(tls_pem_path);
    free(dummy);
    ERR_clear_error();
    return rc;
}

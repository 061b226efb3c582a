/* Enrollment profiles (.mobileconfig): built as a plist from a small set of
 * options, then CMS-signed. No server state, no storage: callers (the OTA
 * endpoint, the renewal API, the CLI, tests, the benchmark) supply the
 * values, including the one-time SCEP challenge they have stored.
 *
 * What a profile holds (key names as in Apple's schema,
 * apple/device-management mdm/profiles/):
 *   TopLevel                 PayloadType "Configuration", a stable
 *                            PayloadIdentifier ("com.orchard.enroll.<host>",
 *                            so a renewal profile replaces the installed one),
 *                            a fresh PayloadUUID, PayloadOrganization.
 *   com.apple.security.root  one per self-signed anchor certificate;
 *   com.apple.security.pkcs1 one per other anchor (the TLS chain), so devices
 *                            trust orchard's HTTPS endpoints.
 *   com.apple.security.scep  the device identity: URL <public>/scep,
 *                            Challenge, Subject CN (the UDID when known: the
 *                            certificate then names the device, which is what
 *                            orchard's renewal rule checks), RSA 2048.
 *     or com.apple.security.pkcs12  an identity issued by the caller, for
 *                            environments without SCEP.
 *   com.apple.mdm            IdentityCertificateUUID → the identity payload,
 *                            Topic, ServerURL <public>/mdm/connect,
 *                            CheckInURL <public>/mdm/checkin, SignMessage,
 *                            CheckOutWhenRemoved, AccessRights 8191,
 *                            ServerCapabilities, UseDevelopmentAPNS.
 */
#ifndef ORCHARD_PROFILE_H
#define ORCHARD_PROFILE_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "plist.h"

#define PROFILE_CONTENT_TYPE "application/x-apple-aspen-config"
#define PROFILE_ACCESS_RIGHTS_ALL 8191 /* every right bit, 1..4096 */
#define PROFILE_SCEP_KEYSIZE 2048
#define PROFILE_TARGET_WATCH 2 /* TopLevel TargetDeviceType: Apple Watch */

typedef struct {
    /* Base URL devices use, "https://host[:port][/prefix]" (a trailing slash
     * is ignored). Must be https: Apple's schema requires it for ServerURL. */
    const char *public_url;
    const char *topic;    /* push topic (com.apple.mgmt.…), required */
    const char *org_name; /* PayloadOrganization; NULL → "orchard" */

    /* SCEP identity (used when pkcs12 is NULL). */
    const char *scep_challenge; /* NULL: no Challenge key */
    const char *subject_cn;     /* NULL: a random CN */

    /* PKCS#12 identity instead of SCEP: DER bytes and their password. */
    const unsigned char *pkcs12;
    size_t pkcs12_len;
    const char *pkcs12_password;

    int sign_message;         /* SignMessage; profile_opts_init sets 1 */
    int use_development_apns; /* UseDevelopmentAPNS; default 0 */
    STACK_OF(X509) *anchors;  /* may be NULL; duplicates are emitted once */
    /* Apple Watch enrollment (watch_http.c): TargetDeviceType 2 (Apple
     * Watch, so an iPhone does not install it by mistake) and no
     * ServerCapabilities (a watch has no user channels, no Bootstrap Token
     * and never sends GetToken). Everything else as for other devices. */
    int watch;
} profile_opts_t;

/* Defaults: SignMessage true (devices behind a TLS-terminating proxy can
 * only identify themselves with Mdm-Signature), everything else empty. */
void profile_opts_init(profile_opts_t *o);

/* Builds the unsigned profile. NULL with a reason on bad options (missing
 * topic, non-https URL...) or allocation failure. */
plist_t *profile_build(const profile_opts_t *o, char *err, size_t errlen);

/* CMS SignedData over data (attached, binary), signed by cert/key, carrying
 * cert and every certificate of chain except cert itself (duplicates once).
 * *out is an OPENSSL_malloc'ed DER buffer (free with OPENSSL_free). 0 or -1
 * with a reason. */
int profile_sign(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain, const void *data, size_t len,
                 unsigned char **out, size_t *outlen, char *err, size_t errlen);

/* profile_build + XML + profile_sign. */
int profile_generate(const profile_opts_t *o, X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
                     unsigned char **out, size_t *outlen, char *err, size_t errlen);

/* The stable top-level PayloadIdentifier for a public URL:
 * "com.orchard.enroll." + host (lower-case; characters other than letters,
 * digits, '-' and '.' become '-'). Heap string, NULL on failure. */
char *profile_identifier(const char *public_url);

/* Issues a device identity for a com.apple.security.pkcs12 payload: a new
 * RSA-2048 key and a client certificate (CN = cn) from ca/ca_key, packed as
 * PKCS#12 under a random password. *der is heap (free), password gets 32
 * hex characters, *cert_out (may be NULL) receives the certificate. 0 or -1
 * with a reason. */
int profile_issue_pkcs12(X509 *ca, EVP_PKEY *ca_key, const char *cn, int days, unsigned char **der,
                         size_t *der_len, char password[33], X509 **cert_out, char *err, size_t errlen);

#endif

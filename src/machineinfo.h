/* MachineInfo: the CMS-signed plist a device POSTs when it asks for an
 * enrollment profile (OTA enrollment, ADE's configuration URL, Apple Watch
 * enrollment). One code path verifies and parses it for all of them.
 *
 * Wire form: the body is a CMS SignedData with the plist as attached content,
 * signed with the device's identity certificate, which (with any
 * intermediates) is included in the structure (Apple: "The certificate chain
 * should validate against the Apple Root CA"). DER is expected; base64 of it
 * is accepted too, which is how ADE's web-auth flow carries the same bytes in
 * the x-apple-aspen-deviceinfo header.
 *
 * Trust: the signer must chain to a certificate in --machineinfo-ca (every
 * certificate there is an anchor, intermediates included), checked with the
 * TLS-client purpose like device identities (a certificate without an
 * extended key usage passes). macOS has been seen to omit the intermediate
 * from the signature: put the intermediate itself in --machineinfo-ca.
 *
 * Keys (apple/device-management other/machineinfo.yaml): UDID, SERIAL,
 * PRODUCT, VERSION are required; OS_VERSION is required by the schema but
 * only sent by iOS/tvOS 17, macOS 14 and later, so it is optional here
 * (older devices would otherwise be refused); the rest are optional. Types
 * are checked; unknown keys are ignored (Apple adds keys over time).
 */
#ifndef ORCHARD_MACHINEINFO_H
#define ORCHARD_MACHINEINFO_H

#include <stddef.h>

#include <openssl/x509.h>

#include "identity.h"

/* Largest signed plist accepted: real ones are well under 4 KiB. */
#define MACHINEINFO_MAX_CONTENT (64 * 1024)

typedef struct {
    char *udid;    /* UDID; a valid enrollment id (mdm_id_valid) */
    char *serial;  /* SERIAL; same character rules */
    char *product; /* PRODUCT, e.g. "iPhone16,1" */
    char *version; /* VERSION: the build, e.g. "22B83" */
    char *os_version; /* OS_VERSION, e.g. "18.1"; NULL before iOS 17 / macOS 14 */
    char *supplemental_build_version;   /* SUPPLEMENTAL_BUILD_VERSION or NULL */
    char *supplemental_os_version_extra; /* SUPPLEMENTAL_OS_VERSION_EXTRA or NULL */
    char *imei, *meid;                  /* IMEI, MEID (cellular iOS/watchOS) or NULL */
    char *language;                     /* LANGUAGE, e.g. "en", or NULL */
    char *software_update_device_id;    /* SOFTWARE_UPDATE_DEVICE_ID or NULL */
    int mdm_can_request_software_update; /* MDM_CAN_REQUEST_SOFTWARE_UPDATE; 0 when absent */
    unsigned char *pairing_token;        /* PAIRING_TOKEN (Apple Watch enrollment); NULL when absent */
    size_t pairing_token_len;
    X509 *signer; /* the verified signer certificate (owned) */
} machineinfo_t;

typedef enum {
    MACHINEINFO_OK = 0,
    MACHINEINFO_MALFORMED = -1, /* not a signed plist, bad keys or types: HTTP 400 */
    MACHINEINFO_UNTRUSTED = -2, /* signature does not verify or signer not trusted: HTTP 403 */
} machineinfo_result_t;

/* Verifies the signature (over the attached content) and the signer's chain
 * against `v` (TLS-client purpose, as identity_verify_cert), then parses and
 * type-checks the plist into *out. On failure *out is zeroed and err holds a
 * one-line reason naming the problem (never the content's secrets). */
machineinfo_result_t machineinfo_verify_and_parse(const identity_verifier_t *v, const void *body, size_t len,
                                                  machineinfo_t *out, char *err, size_t errlen);
void machineinfo_free(machineinfo_t *m);

#endif

/* Opening the signed enrollment profiles orchard hands out, as a device
 * does: verify the CMS signature against the trusted CA and take the plist
 * out; then find payloads by type. Shared by the enrollment, watch and ADE
 * tests. */
#ifndef ORCHARD_PROFILECHECK_H
#define ORCHARD_PROFILECHECK_H

#include <stddef.h>

#include <openssl/x509.h>

#include "plist.h"

/* The plist inside a signed profile, or NULL (reason on stderr) unless the
 * whole buffer is one attached CMS SignedData whose signer chains to `ca`
 * (any purpose: devices trust a profile signed by a TLS server
 * certificate). Caller frees with plist_free. */
plist_t *profilecheck_open(const void *der, size_t len, X509 *ca);
/* Same, with the CA read from a PEM file. */
plist_t *profilecheck_open_file(const void *der, size_t len, const char *ca_path);

/* The nth (from 0) PayloadContent item whose PayloadType is `type`, or NULL. */
const plist_t *profilecheck_payload(const plist_t *profile, const char *type, int nth);

#endif

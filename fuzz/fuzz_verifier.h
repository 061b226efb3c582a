/* Shared by the identity fuzz targets: a verifier trusting a throw-away
 * P-256 CA made once at start-up. */
#ifndef ORCHARD_FUZZ_VERIFIER_H
#define ORCHARD_FUZZ_VERIFIER_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "identity.h"
#include "pki.h"

/* Aborts on failure: a fuzzer without its verifier would test nothing. */
static inline identity_verifier_t *fuzz_make_verifier(void)
{
    char tmpdir[64], ca_path[128];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/orchard-fuzz-ca-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(ca_path, sizeof ca_path, "%s/ca.pem", tmpdir);
    EVP_PKEY *key = pki_new_ec_key();
    X509 *ca = key ? pki_issue_cert(NULL, key, key, "orchard fuzz CA", 365, PKI_USAGE_CA, NULL, 0) : NULL;
    if (!ca || pki_write_cert(ca_path, ca) != 0) {
        fprintf(stderr, "cannot create the fuzz CA\n");
        abort();
    }
    X509_free(ca);
    EVP_PKEY_free(key);
    char *err = NULL;
    identity_verifier_t *v = identity_verifier_new(ca_path, &err);
    /* The store is in memory now: remove the files at once, so that no
     * way of ending the fuzzer (timeout, crash, signal) leaves them. */
    unlink(ca_path);
    rmdir(tmpdir);
    if (!v) {
        fprintf(stderr, "verifier: %s\n", err ? err : "?");
        abort();
    }
    free(err);
    return v;
}

#endif

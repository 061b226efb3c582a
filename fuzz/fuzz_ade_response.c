/* Fuzz target: what Apple's ADE side hands orchard — device pages of the
 * fetch/sync/details services (each record through ade_device_from_json,
 * with its ISO 8601 times), the sealed-credentials JSON, and whole token
 * files (S/MIME + CMS enveloped data through ade_token_decrypt, against a
 * key pair made once at start). The first byte picks which.
 * Invariants: nothing crashes or leaks; a record accepted has a serial and
 * a known op_type (or none); credentials accepted have all four strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ade_sync.h"
#include "ade_time.h"
#include "ade_token.h"

static char data_dir[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(data_dir, sizeof data_dir, "/tmp/orchard-fuzz-ade-XXXXXX");
    if (!mkdtemp(data_dir))
        abort();
    char *err = NULL;
    if (ade_keypair_create(data_dir, 0, &err) < 0)
        abort();
    free(err);
    return 0;
}

static void device_page(const uint8_t *d, size_t n)
{
    json_t *j = json_loadb((const char *)d, n, JSON_REJECT_DUPLICATES, NULL);
    json_t *devs = json_is_object(j) ? json_object_get(j, "devices") : j;
    if (json_is_array(devs)) {
        size_t i;
        json_t *o;
        json_array_foreach(devs, i, o)
        {
            ade_device_t dev;
            char why[256];
            if (ade_device_from_json(o, NULL, "fuzz", &dev, why, sizeof why) == 0) {
                if (!dev.serial_number || !*dev.serial_number)
                    abort();
                if (dev.op_type && strcmp(dev.op_type, "added") && strcmp(dev.op_type, "modified") &&
                    strcmp(dev.op_type, "deleted"))
                    abort();
            }
        }
    }
    json_decref(j);
}

static void credentials(const uint8_t *d, size_t n)
{
    ade_creds_t c;
    char why[256];
    if (ade_creds_from_json((const char *)d, n, &c, why, sizeof why) == 0) {
        if (!c.consumer_key || !c.consumer_secret || !c.access_token || !c.access_secret)
            abort();
        ade_creds_free(&c);
    }
}

static void time_string(const uint8_t *d, size_t n)
{
    char buf[128];
    size_t k = n < sizeof buf - 1 ? n : sizeof buf - 1;
    memcpy(buf, d, k);
    buf[k] = '\0';
    int64_t t;
    if (ade_time_parse(buf, &t) == 0) {
        char back[21];
        ade_time_format(t, back); /* must not crash for any accepted time */
    }
}

static void token_file(const uint8_t *d, size_t n)
{
    ade_creds_t c;
    char *err = NULL;
    if (ade_token_decrypt(data_dir, d, n, &c, &err) == 0)
        ade_creds_free(&c);
    free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 4) {
    case 0: device_page(data + 1, size - 1); break;
    case 1: credentials(data + 1, size - 1); break;
    case 2: time_string(data + 1, size - 1); break;
    default: token_file(data + 1, size - 1); break;
    }
    return 0;
}

/* libFuzzer target: the device-message envelope (mdm_message_parse) that
 * every check-in and command report goes through before identity checks,
 * plus the per-type key checks of each check-in message. */
#include <stddef.h>
#include <stdint.h>

#include "mdm_message.h"
#include "plist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const mdm_key_spec_t keys[] = {
        {"Topic", PLIST_STRING, 1},     {"Token", PLIST_DATA, 1},       {"PushMagic", PLIST_STRING, 1},
        {"UnlockToken", PLIST_DATA, 0}, {"ErrorChain", PLIST_ARRAY, 0}, {"AwaitingConfiguration", PLIST_BOOL, 0},
    };
    mdm_message_t m;
    char err[256];
    if (mdm_message_parse(data, size, &m, err, sizeof err) != 0)
        return 0;
    mdm_check_keys(m.root, keys, sizeof keys / sizeof keys[0], err, sizeof err);
    mdm_message_free(&m);
    return 0;
}

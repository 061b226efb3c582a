/* Automated Device Enrollment on the command line (admin_ade.c's API, plus
 * the local key pair):
 *
 *   orchard ade keypair [--force]             make DATA_DIR/ade-cert.pem (upload to Apple) + key
 *   orchard ade token import NAME FILE.p7m    import (or renew) a server token
 *   orchard ade token list | show NAME | delete NAME | sync NAME
 *   orchard ade token default-profile NAME UUID | --clear
 *   orchard ade token disown NAME SERIAL...   (permanent at Apple)
 *   orchard ade devices [--token T] [--deleted] [--after SERIAL] [--limit N]
 *   orchard ade device SERIAL [--refresh]
 *   orchard ade profile define FILE.json|-    {"token": ..., "profile_name": ..., ...}
 *   orchard ade profile list [--token T] | show UUID [--apple]
 *   orchard ade profile assign|remove UUID SERIAL...
 */
#ifndef ORCHARD_CLI_ADE_H
#define ORCHARD_CLI_ADE_H

/* argv[0] is "ade". Exit status: 0 success, 1 refused or failed, 2 usage. */
int cli_ade_main(int argc, char **argv);

#endif

/* Enrollment on the command line: thin clients of the admin API and of
 * GET /enroll.
 *
 *   orchard certs list [--udid U] [--expiring-within-days N] [--limit N]
 *   orchard certs show SERIAL | revoke SERIAL
 *   orchard admission allow|deny|show SERIAL-OR-UDID
 *   orchard renew --days N [--dry-run]
 *   orchard challenge [--udid U]
 *   orchard profile [--secret S] [--pkcs12] [--output FILE]
 */
#ifndef ORCHARD_CLI_ENROLL_H
#define ORCHARD_CLI_ENROLL_H

/* command is one of "certs", "admission", "renew", "challenge", "profile";
 * argv[0] is the command itself (as main passes argv + 1). Returns the exit
 * status: 0 success, 1 refused or failed, 2 usage error. */
int cli_enroll_main(const char *command, int argc, char **argv);

#endif

/* Declarative device management on the command line: thin clients of the
 * admin API (admin_ddm.c).
 *
 *   orchard declaration put FILE|-  | list [--kind K] | get ID | delete ID
 *   orchard set put NAME [ID...] | list | get NAME | delete NAME
 *   orchard set assign|unassign NAME --device ID | --group G | --all
 *   orchard group add|remove GROUP ID | show GROUP
 *   orchard device-ddm ID            effective declarations, what the device reports, status items
 *   orchard asset-data put NAME FILE --type T | get NAME | delete NAME
 */
#ifndef ORCHARD_CLI_DDM_H
#define ORCHARD_CLI_DDM_H

/* command is "declaration", "set", "group", "device-ddm" or "asset-data";
 * argv[0] is the command itself. Returns the exit status: 0 success, 1
 * refused or failed, 2 usage error. */
int cli_ddm_main(const char *command, int argc, char **argv);

#endif

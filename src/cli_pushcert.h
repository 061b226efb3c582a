/* `orchard pushcert`: APNs MDM push certificate tooling on the command line
 * (csr, sign, import, show). The logic lives in pushcert.h. */
#ifndef ORCHARD_CLI_PUSHCERT_H
#define ORCHARD_CLI_PUSHCERT_H

/* argv[0] is "pushcert", argv[1] the subcommand. Returns the exit status:
 * 0 success, 1 failure, 2 usage error. */
int cli_pushcert_main(int argc, char **argv);

#endif

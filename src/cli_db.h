/* `orchard db`: database maintenance on the command line (migrate). */
#ifndef ORCHARD_CLI_DB_H
#define ORCHARD_CLI_DB_H

/* argv[0] is "db", argv[1] the subcommand. Returns the exit status:
 * 0 success, 1 failure, 2 usage error. */
int cli_db_main(int argc, char **argv);

#endif

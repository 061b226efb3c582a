/* `orchard watch-enrollment enable|disable|status PHONE|--group G` and
 * `orchard watches PHONE`: Apple Watch enrollment from the command line
 * (admin API under /v1, see admin_watch.c). */
#ifndef ORCHARD_CLI_WATCH_H
#define ORCHARD_CLI_WATCH_H

/* command is "watch-enrollment" or "watches"; argv[0] is the command itself.
 * Exit status: 0 success, 1 refused or failed, 2 usage error. */
int cli_watch_main(const char *command, int argc, char **argv);

#endif

/* Subcommand entry points. */
#ifndef ORCHARD_SERVE_H
#define ORCHARD_SERVE_H

int serve_main(int argc, char **argv);
/* devices, enqueue, commands, push: admin API clients (cli.c). */
int cli_main(const char *command, int argc, char **argv);

#endif

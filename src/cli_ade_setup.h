/* `orchard ade setup-commands put FILE|get|clear`: the commands orchard
 * runs on ADE devices that await configuration, before DeviceConfigured
 * (admin API /v1/ade/setup-commands, admin_ade_setup.c). */
#ifndef ORCHARD_CLI_ADE_SETUP_H
#define ORCHARD_CLI_ADE_SETUP_H

/* argv[0] is "setup-commands". Exit status: 0 success, 1 refused or
 * failed, 2 usage error. */
int cli_ade_setup_main(int argc, char **argv);

#endif

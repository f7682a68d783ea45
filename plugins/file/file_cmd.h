/* file_cmd.h: the commands the file backend adds to `seastreamer` (file_cmd.c). */
#ifndef SEA_FILE_CMD_H
#define SEA_FILE_CMD_H

#include <seastreamer/plugin.h>

/* decode, verify, repair; ended by an entry whose name is NULL. */
extern const sea_plugin_command_t file_commands[];

#endif

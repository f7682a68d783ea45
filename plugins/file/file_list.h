/* file_list.h: the file backend's listing (file_list.c), called from file.c's descriptor. */
#ifndef SEA_FILE_LIST_H
#define SEA_FILE_LIST_H

#include <seastreamer/plugin.h>

struct ljob;

/* List the .ss file at path on a worker thread (sea_plugin_t.list); jobs is the streamer's list
 * of listings still running. */
int sea_file_list(const sea_host_t *host, struct ljob **jobs, const char *path,
                  const sea_list_args_t *a, sea_op_t *op);
/* From disconnect: the listings still running complete nothing. */
void sea_file_list_abandon(struct ljob **jobs);

#endif

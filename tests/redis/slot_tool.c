/* slot_tool.c: prints the Redis Cluster slot the redis backend computes for each key argument
 * (plugins/redis/redis_cluster.c), one per line, for test_cluster.sh to compare with what the
 * servers say (CLUSTER KEYSLOT). With no key, checks the specification's CRC16 test vector. */
#include <stdio.h>
#include <string.h>

#include "redis_cluster.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    /* "The CRC16 ... output for "123456789" is 0x31C3" (Redis Cluster specification) */
    unsigned crc = rcl_crc16("123456789", 9);
    printf("%04X\n", crc);
    return crc == 0x31C3 ? 0 : 1;
  }
  for (int i = 1; i < argc; i++)
    printf("%u\n", rcl_slot(argv[i], strlen(argv[i])));
  return 0;
}

/* stdio_fds.c: the process-wide state of fd 0 and fd 1, shared by the reader (stdio_reader.c)
 * and the writer (stdio_writer.c): each acquires before it touches its fd and releases when freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stdio_internal.h"

/* ---------------------------------------------------------------------------------------------
 * fd 0 and fd 1 flags. O_NONBLOCK lives in the open file description, which a terminal's stdin
 * and stdout often share, and libuv sets it on any fd it polls. So both fds' flags are saved
 * before either side touches anything and restored when the last stdio object goes away.
 * ------------------------------------------------------------------------------------------- */
static struct {
  unsigned refs;
  int flags[2];
  int saved[2];
  int touched[2];
} stdio_fds;

void stdio_fds_acquire(void) {
  if (stdio_fds.refs++ != 0)
    return;
  for (int fd = 0; fd < 2; fd++) {
    stdio_fds.flags[fd] = fcntl(fd, F_GETFL);
    stdio_fds.saved[fd] = stdio_fds.flags[fd] != -1;
    stdio_fds.touched[fd] = 0;
  }
}

/* The fd's flags are to be restored at the last release: libuv is about to poll it (and so make
 * it nonblocking), or we made it nonblocking ourselves. */
void stdio_fd_touch(int fd) {
  stdio_fds.touched[fd] = 1;
}

void stdio_fds_release(void) {
  if (--stdio_fds.refs != 0)
    return;
  for (int fd = 0; fd < 2; fd++)
    if (stdio_fds.touched[fd] && stdio_fds.saved[fd])
      (void)fcntl(fd, F_SETFL, stdio_fds.flags[fd]);
}

/* Nonblocking only where it means something: pipes and sockets, and a terminal on stdin (a
 * terminal's stdout usually shares its file description with stderr, whose writers don't expect
 * EAGAIN). A regular file is always ready, and the host's watch treats it so. *pollable says
 * whether watching the fd is harmless: libuv makes any fd it polls nonblocking. */
int stdio_fd_prepare(int fd, int *is_regular, int *pollable) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  int fl = fcntl(fd, F_GETFL);
  *is_regular = S_ISREG(st.st_mode);
  *pollable = *is_regular || (fl != -1 && (fl & O_NONBLOCK));
  if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || (fd == 0 && isatty(fd))) {
    stdio_fds.touched[fd] = 1;
    if (fl != -1 && !(fl & O_NONBLOCK))
      (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    *pollable = 1;
  }
  return 0;
}

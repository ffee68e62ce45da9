/* A multithreaded program that never touches /dev/kvm but uses every libc
 * entry point the interposer wraps (open, openat, close, dup, dup2, fcntl,
 * ioctl, stat, fstat, access) from several threads at once. Its output is
 * deterministic, so same_behaviour.sh can compare a run under `anykvm exec`
 * with a plain one. */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

enum { k_threads = 8, k_rounds = 200 };

struct result {
  long bytes, stats, ioctls, errors;
};

static void* worker(void* arg) {
  struct result* r = arg;
  char path[64];
  snprintf(path, sizeof(path), "/tmp/anykvm-mt-%d-%ld", (int)getpid(), r->bytes);
  r->bytes = 0;
  for (int i = 0; i < k_rounds; ++i) {
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) { r->errors++; continue; }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "round %d\n", i);
    if (write(fd, buf, n) != n) r->errors++;
    int d = dup(fd);
    int d2 = fcntl(fd, F_DUPFD_CLOEXEC, 50);
    struct stat st;
    if (fstat(d, &st) == 0) r->bytes += st.st_size;
    if (stat(path, &st) == 0 && access(path, R_OK) == 0) r->stats++;
    int pipefd[2];
    if (pipe(pipefd) == 0) {
      int avail = -1;
      if (write(pipefd[1], buf, n) == n && ioctl(pipefd[0], FIONREAD, &avail) == 0 && avail == n) r->ioctls++;
      int moved = dup2(pipefd[0], d2);
      if (moved != d2) r->errors++;
      close(pipefd[0]);
      close(pipefd[1]);
    }
    int at = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (at >= 0) close(at); else r->errors++;
    close(d2);
    close(d);
    close(fd);
  }
  unlink(path);
  return NULL;
}

int main(void) {
  pthread_t t[k_threads];
  struct result res[k_threads];
  memset(res, 0, sizeof(res));
  for (int i = 0; i < k_threads; ++i) {
    res[i].bytes = i;  /* the thread's id, read back before use */
    pthread_create(&t[i], NULL, worker, &res[i]);
  }
  long total = 0;
  for (int i = 0; i < k_threads; ++i) {
    pthread_join(t[i], NULL);
    printf("thread %d: bytes %ld stats %ld ioctls %ld errors %ld\n", i, res[i].bytes, res[i].stats, res[i].ioctls,
           res[i].errors);
    total += res[i].errors;
  }
  return total ? 1 : 0;
}

/* Run under `anykvm exec --`: checks the interposer's contract
 * (docs/interposer.md) from a plain C client's point of view:
 *   - every open entry point of /dev/kvm gives an fd served by anykvm,
 *   - stat/lstat/fstatat/access/faccessat/euidaccess of /dev/kvm report a
 *     character device 10:232 the user may read and write; fstat of VM and
 *     vCPU fds reports Linux's anonymous inodes,
 *   - dup/dup2/dup3/fcntl(F_DUPFD, F_DUPFD_CLOEXEC) keep objects alive while
 *     any fd refers to them; close_range and closefrom drop them,
 *   - fork: the child's VM and vCPU ioctls fail with EIO, its /dev/kvm fd can
 *     still create VMs,
 *   - exec: O_CLOEXEC fds are gone; a /dev/kvm fd kept across exec works
 *     again, kept VM and vCPU fds give EIO (as on Linux); a new open of
 *     /dev/kvm is served.
 * "Served by anykvm" is told from the host's /dev/kvm (which this machine may
 * have) by /proc/self/fd: ours is not a link to /dev/kvm.
 * Exit status 0 when every check holds; each failure is printed. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

/* The fortified entry points, called directly (a -D_FORTIFY_SOURCE build
 * calls them for open() with non-constant flags). */
extern int __open_2(const char*, int);
extern int __open64_2(const char*, int);
extern int __openat_2(int, const char*, int);
extern int __openat64_2(int, const char*, int);

static int g_failures;
#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "interpose_probe: FAIL line %d: %s: ", __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
      g_failures++;                                                       \
    }                                                                     \
  } while (0)

static int served(int fd) {
  char link[64], target[256];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n < 0) return 0;
  target[n] = 0;
  return strcmp(target, "/dev/kvm") != 0 && ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
}

static void check_opens(void) {
  int fds[] = {
      open("/dev/kvm", O_RDWR),          open64("/dev/kvm", O_RDWR | O_CLOEXEC),
      openat(AT_FDCWD, "/dev/kvm", O_RDWR), openat64(AT_FDCWD, "/dev/kvm", O_RDWR),
      __open_2("/dev/kvm", O_RDWR),      __open64_2("/dev/kvm", O_RDWR),
      __openat_2(AT_FDCWD, "/dev/kvm", O_RDWR), __openat64_2(AT_FDCWD, "/dev/kvm", O_RDWR),
  };
  for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); ++i) {
    CHECK(fds[i] >= 0 && served(fds[i]), "open variant %zu: fd %d", i, fds[i]);
    if (fds[i] >= 0) close(fds[i]);
  }
  /* Other paths are untouched. */
  int null = open("/dev/null", O_RDONLY);
  CHECK(null >= 0 && !served(null), "/dev/null");
  CHECK(ioctl(null, KVM_GET_API_VERSION, 0) == -1 && errno == ENOTTY, "KVM ioctl on /dev/null: errno %d", errno);
  close(null);
}

static void check_stat(void) {
  struct stat st;
  CHECK(stat("/dev/kvm", &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 10 && minor(st.st_rdev) == 232 &&
            (st.st_mode & 0666) == 0666,
        "stat mode %o", st.st_mode);
  CHECK(lstat("/dev/kvm", &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(10, 232), "lstat");
  CHECK(fstatat(AT_FDCWD, "/dev/kvm", &st, 0) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(10, 232),
        "fstatat");
  struct stat64 st64;
  CHECK(stat64("/dev/kvm", &st64) == 0 && S_ISCHR(st64.st_mode) && st64.st_rdev == makedev(10, 232), "stat64");
  CHECK(access("/dev/kvm", R_OK | W_OK) == 0, "access R|W: %s", strerror(errno));
  CHECK(access("/dev/kvm", F_OK) == 0, "access F_OK");
  CHECK(faccessat(AT_FDCWD, "/dev/kvm", R_OK | W_OK, 0) == 0, "faccessat");
  CHECK(euidaccess("/dev/kvm", R_OK | W_OK) == 0, "euidaccess");
  CHECK(access("/dev/kvm", X_OK) == -1 && errno == EACCES, "access X_OK");

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  CHECK(fstat(kvm, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(10, 232), "fstat /dev/kvm fd");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  CHECK(vm >= 0 && vcpu >= 0, "create");
  CHECK(fstat(vm, &st) == 0 && st.st_mode == 0600 && st.st_size == 0, "fstat VM fd mode %o", st.st_mode);
  CHECK(fstat(vcpu, &st) == 0 && st.st_mode == 0600, "fstat vCPU fd mode %o", st.st_mode);
  close(vcpu);
  close(vm);
  close(kvm);
}

/* Can this VM fd still do VM things? */
static int vm_alive(int vm) {
  int v = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
  return v > 0;
}

static void check_dups(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  CHECK(vm_alive(vm), "fresh VM");

  int a = dup(vm);
  int b = dup2(vm, 100);
  int c = dup3(vm, 101, O_CLOEXEC);
  int d = fcntl(vm, F_DUPFD, 102);
  int e = fcntl(vm, F_DUPFD_CLOEXEC, 110);
  CHECK(a >= 0 && b == 100 && c == 101 && d >= 102 && e >= 110, "dups %d %d %d %d %d", a, b, c, d, e);
  close(vm);
  CHECK(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == -1 && errno == EBADF, "closed fd: errno %d", errno);
  int copies[] = {a, b, c, d, e};
  for (int i = 0; i < 5; ++i) {
    CHECK(vm_alive(copies[i]), "copy %d (fd %d) after the original closed", i, copies[i]);
    int vcpu = ioctl(copies[i], KVM_CREATE_VCPU, i);
    CHECK(vcpu >= 0, "vCPU %d through copy %d", i, copies[i]);
    if (vcpu >= 0) close(vcpu);
    close(copies[i]);
  }
  /* dup2 onto one of our fds replaces what it referred to. */
  int vm2 = ioctl(kvm, KVM_CREATE_VM, 0);
  CHECK(dup2(kvm, vm2) == vm2, "dup2 over a VM fd");
  CHECK(ioctl(vm2, KVM_GET_API_VERSION, 0) == KVM_API_VERSION, "vm2 is a /dev/kvm fd now");
  CHECK(ioctl(vm2, KVM_CREATE_VCPU, 0) == -1 && errno == EINVAL, "no VM behind vm2 any more: errno %d", errno);
  close(vm2);
  /* close_range drops everything in the range. */
  int vm3 = ioctl(kvm, KVM_CREATE_VM, 0);
  int high = dup2(vm3, 200);
  close(vm3);
  CHECK(vm_alive(high), "fd 200");
  CHECK(close_range(200, 200, 0) == 0, "close_range");
  int reused = dup2(open("/dev/null", O_RDONLY), 200);
  CHECK(ioctl(reused, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == -1 && errno == ENOTTY,
        "fd 200 reused for /dev/null is not ours: errno %d", errno);
  close(reused);
  /* So does closefrom. */
  int vm4 = ioctl(kvm, KVM_CREATE_VM, 0);
  int top = dup2(vm4, 300);
  close(vm4);
  CHECK(vm_alive(top), "fd 300");
  closefrom(300);
  reused = dup2(open("/dev/null", O_RDONLY), 300);
  CHECK(ioctl(reused, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == -1 && errno == ENOTTY,
        "fd 300 reused for /dev/null after closefrom is not ours: errno %d", errno);
  close(reused);
  close(kvm);
}

static void check_fork(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  pid_t pid = fork();
  if (pid == 0) {
    int bad = 0;
    struct kvm_regs regs;
    if (!(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == -1 && errno == EIO)) bad |= 1;
    if (!(ioctl(vcpu, KVM_GET_REGS, &regs) == -1 && errno == EIO)) bad |= 2;
    if (!(ioctl(vcpu, KVM_RUN, 0) == -1 && errno == EIO)) bad |= 4;
    int vm2 = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm2 < 0 || ioctl(vm2, KVM_CREATE_VCPU, 0) < 0) bad |= 8;
    int kvm2 = open("/dev/kvm", O_RDWR);
    if (!served(kvm2)) bad |= 16;
    _exit(bad);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child: failed checks mask %d", WEXITSTATUS(status));
  struct kvm_regs regs;
  CHECK(ioctl(vcpu, KVM_GET_REGS, &regs) == 0, "the parent's vCPU after fork");
  close(vcpu);
  close(vm);
  close(kvm);
}

static void check_exec(const char* self) {
  int kvm = open("/dev/kvm", O_RDWR);  /* no O_CLOEXEC: survives exec */
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);  /* O_CLOEXEC, as on Linux */
  int vm_kept = ioctl(kvm, KVM_CREATE_VM, 0);
  int vcpu_kept = ioctl(vm_kept, KVM_CREATE_VCPU, 0);
  CHECK(served(kvm) && vm >= 0 && vcpu_kept >= 0, "before exec");
  CHECK(ioctl(vm_kept, FIONCLEX, 0) == 0 && fcntl(vcpu_kept, F_SETFD, 0) == 0, "clearing close-on-exec");
  pid_t pid = fork();
  if (pid == 0) {
    char a[16], b[16], c[16], d[16];
    snprintf(a, sizeof(a), "%d", kvm);
    snprintf(b, sizeof(b), "%d", vm);
    snprintf(c, sizeof(c), "%d", vm_kept);
    snprintf(d, sizeof(d), "%d", vcpu_kept);
    execl("/proc/self/exe", self, "after-exec", a, b, c, d, (char*)NULL);
    _exit(99);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "after exec: status 0x%x", status);
  close(vcpu_kept);
  close(vm_kept);
  close(vm);
  close(kvm);
}

static int after_exec(int kvm, int vm, int vm_kept, int vcpu_kept) {
  /* The VM fd was O_CLOEXEC: gone. */
  CHECK(fcntl(vm, F_GETFD) == -1 && errno == EBADF, "VM fd %d survived exec", vm);
  /* The /dev/kvm fd survived and works, as on Linux. */
  CHECK(served(kvm), "kept /dev/kvm fd %d: errno %d", kvm, errno);
  int vm2 = ioctl(kvm, KVM_CREATE_VM, 0);
  CHECK(vm2 >= 0 && ioctl(vm2, KVM_CREATE_VCPU, 0) >= 0, "a VM through the kept /dev/kvm fd");
  /* VM and vCPU fds kept across exec belong to the old image: EIO, as for another mm on Linux. */
  struct kvm_regs regs;
  CHECK(ioctl(vm_kept, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == -1 && errno == EIO, "kept VM fd: errno %d",
        errno);
  CHECK(ioctl(vcpu_kept, KVM_GET_REGS, &regs) == -1 && errno == EIO, "kept vCPU fd: errno %d", errno);
  /* LD_PRELOAD is inherited: a new open is served. */
  int fresh = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  CHECK(served(fresh), "open after exec");
  return g_failures ? 1 : 0;
}

int main(int argc, char** argv) {
  if (argc == 6 && !strcmp(argv[1], "after-exec"))
    return after_exec(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  check_opens();
  check_stat();
  check_dups();
  check_fork();
  check_exec(argv[0]);
  if (g_failures) {
    fprintf(stderr, "interpose_probe: %d failure(s)\n", g_failures);
    return 1;
  }
  printf("interpose_probe: all checks passed\n");
  return 0;
}

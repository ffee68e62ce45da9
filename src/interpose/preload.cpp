// LD_PRELOAD interposer (libanykvm-preload.so) and directly linkable library
// (libanykvm.so): the libc entry points a KVM client uses on /dev/kvm are
// served by kvmapi; everything else goes straight to the next definition
// (libc) through dlsym(RTLD_NEXT). No logic of its own and no constructor:
// a process that never opens /dev/kvm (a shell wrapper, coreutils) only pays
// a string compare per open.
//
// Across fork: the child inherits the fds and a copy of the table; VM and vCPU
// ioctls from the child fail with EIO (Linux: kvm->mm != current->mm); its
// /dev/kvm fd can create new VMs. Across exec: KVM fds are O_CLOEXEC (VM,
// vCPU, and /dev/kvm when opened so); a KVM fd kept across exec is recognised
// by its memfd name on its first KVM ioctl: /dev/kvm works again, VM and vCPU
// fds give EIO (another mm), as on Linux.
// docs/interposer.md has the whole contract; tests/interpose/ tests it.
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kvmapi/kvmapi.h"

namespace {

constexpr const char* k_dev_kvm = "/dev/kvm";

bool is_dev_kvm(const char* path) { return path && strcmp(path, k_dev_kvm) == 0; }

template <typename F>
F next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

#define NEXT(fn) \
  static auto real = next<decltype(&fn)>(#fn)

int ret_errno(long r) {
  if (r < 0) {
    errno = int(-r);
    return -1;
  }
  return int(r);
}

int open_kvm(int flags) { return ret_errno(anykvm::kvmapi::open_system(flags)); }

// /dev/kvm as Linux shows it: crw-rw-rw- 10,232 (we serve every user).
void fill_kvm_stat(struct stat* st) {
  memset(st, 0, sizeof(*st));
  st->st_mode = S_IFCHR | 0666;
  st->st_rdev = makedev(10, 232);
  st->st_nlink = 1;
  st->st_blksize = 4096;
}

// fstat of one of our fds: /dev/kvm as above; VM and vCPU fds as Linux's
// anonymous inodes (mode 0600 with no file type, size 0).
void fill_fd_stat(int fd, struct stat* st) {
  anykvm::kvmapi::FdKind kind = anykvm::kvmapi::FdKind::Sys;
  anykvm::kvmapi::fd_kind(fd, kind);
  fill_kvm_stat(st);
  if (kind != anykvm::kvmapi::FdKind::Sys) {
    st->st_mode = 0600;
    st->st_rdev = 0;
  }
}

// fstatat/statx(fd, "", AT_EMPTY_PATH) on one of our fds: an fstat.
bool is_our_empty_path(int dirfd, const char* path, int flags) {
  return (flags & AT_EMPTY_PATH) && path && !*path && anykvm::kvmapi::is_kvm_fd(dirfd);
}

// statx as fill_fd_stat / fill_kvm_stat would answer.
void fill_statx(const struct stat& st, struct statx* sx) {
  memset(sx, 0, sizeof(*sx));
  sx->stx_mask = STATX_BASIC_STATS;
  sx->stx_mode = uint16_t(st.st_mode);
  sx->stx_nlink = uint32_t(st.st_nlink);
  sx->stx_blksize = uint32_t(st.st_blksize);
  sx->stx_rdev_major = major(st.st_rdev);
  sx->stx_rdev_minor = minor(st.st_rdev);
}

bool flags_take_mode(int flags) { return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE; }

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int open(const char* path, int flags, ...) {
  if (is_dev_kvm(path)) return open_kvm(flags);
  mode_t mode = 0;
  if (flags_take_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  NEXT(open);
  return real(path, flags, mode);
}

__attribute__((visibility("default"))) int open64(const char* path, int flags, ...) {
  if (is_dev_kvm(path)) return open_kvm(flags);
  mode_t mode = 0;
  if (flags_take_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  NEXT(open64);
  return real(path, flags, mode);
}

__attribute__((visibility("default"))) int openat(int dirfd, const char* path, int flags, ...) {
  if (is_dev_kvm(path)) return open_kvm(flags);
  mode_t mode = 0;
  if (flags_take_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  NEXT(openat);
  return real(dirfd, path, flags, mode);
}

__attribute__((visibility("default"))) int openat64(int dirfd, const char* path, int flags, ...) {
  if (is_dev_kvm(path)) return open_kvm(flags);
  mode_t mode = 0;
  if (flags_take_mode(flags)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  NEXT(openat64);
  return real(dirfd, path, flags, mode);
}

// The _FORTIFY_SOURCE entry points.
__attribute__((visibility("default"))) int __open_2(const char* path, int flags) {
  if (is_dev_kvm(path)) return open_kvm(flags);
  NEXT(__open_2);
  return real(path, flags);
}
__attribute__((visibility("default"))) int __open64_2(const char* path, int flags) {
  if (is_dev_kvm(path)) return open_kvm(flags);
  NEXT(__open64_2);
  return real(path, flags);
}
__attribute__((visibility("default"))) int __openat_2(int dirfd, const char* path, int flags) {
  if (is_dev_kvm(path)) return open_kvm(flags);
  NEXT(__openat_2);
  return real(dirfd, path, flags);
}
__attribute__((visibility("default"))) int __openat64_2(int dirfd, const char* path, int flags) {
  if (is_dev_kvm(path)) return open_kvm(flags);
  NEXT(__openat64_2);
  return real(dirfd, path, flags);
}

__attribute__((visibility("default"))) int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  if (anykvm::kvmapi::is_kvm_fd(fd)) return ret_errno(anykvm::kvmapi::ioctl(fd, request, arg));
  // A KVM request on an fd we do not know may be one inherited across exec
  // (the only costly check, and only for KVMIO requests).
  if (_IOC_TYPE(uint32_t(request)) == 0xAE && anykvm::kvmapi::adopt_inherited(fd))
    return ret_errno(anykvm::kvmapi::ioctl(fd, request, arg));
  NEXT(ioctl);
  return real(fd, request, arg);
}

__attribute__((visibility("default"))) int close(int fd) {
  NEXT(close);
  int r = real(fd);
  if (r == 0 || errno != EBADF) anykvm::kvmapi::on_close(fd);
  return r;
}

// glibc 2.34+. Without CLOSE_RANGE_CLOEXEC it closes the range.
__attribute__((visibility("default"))) int close_range(unsigned int first, unsigned int last, int flags) {
  NEXT(close_range);
  if (!real) return errno = ENOSYS, -1;
  int r = real(first, last, flags);
  if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC)) anykvm::kvmapi::on_close_range(first, last);
  return r;
}

// glibc 2.34+; closes every fd from lowfd up (through the close_range system
// call, which our close_range hook would not see).
__attribute__((visibility("default"))) void closefrom(int lowfd) {
  NEXT(closefrom);
  if (real) real(lowfd);
  if (lowfd >= 0) anykvm::kvmapi::on_close_range(unsigned(lowfd), ~0u);
}

__attribute__((visibility("default"))) int dup(int fd) {
  NEXT(dup);
  int r = real(fd);
  if (r >= 0) anykvm::kvmapi::on_dup(fd, r);
  return r;
}

__attribute__((visibility("default"))) int dup2(int fd, int fd2) {
  NEXT(dup2);
  int r = real(fd, fd2);
  if (r >= 0 && fd != fd2) anykvm::kvmapi::on_dup(fd, r);
  return r;
}

__attribute__((visibility("default"))) int dup3(int fd, int fd2, int flags) {
  NEXT(dup3);
  int r = real(fd, fd2, flags);
  if (r >= 0) anykvm::kvmapi::on_dup(fd, r);
  return r;
}

// F_DUPFD and F_DUPFD_CLOEXEC make a new fd to the same object.
static int after_fcntl(int fd, int cmd, int r) {
  if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) anykvm::kvmapi::on_dup(fd, r);
  return r;
}

__attribute__((visibility("default"))) int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  NEXT(fcntl);
  return after_fcntl(fd, cmd, real(fd, cmd, arg));
}

__attribute__((visibility("default"))) int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  NEXT(fcntl64);
  return after_fcntl(fd, cmd, real(fd, cmd, arg));
}

// ---- stat family: /dev/kvm is a world-usable character device 10:232 ----

__attribute__((visibility("default"))) int stat(const char* path, struct stat* st) {
  if (is_dev_kvm(path)) return fill_kvm_stat(st), 0;
  NEXT(stat);
  return real(path, st);
}
__attribute__((visibility("default"))) int stat64(const char* path, struct stat64* st) {
  if (is_dev_kvm(path)) return fill_kvm_stat(reinterpret_cast<struct stat*>(st)), 0;
  NEXT(stat64);
  return real(path, st);
}
__attribute__((visibility("default"))) int lstat(const char* path, struct stat* st) {
  if (is_dev_kvm(path)) return fill_kvm_stat(st), 0;
  NEXT(lstat);
  return real(path, st);
}
__attribute__((visibility("default"))) int lstat64(const char* path, struct stat64* st) {
  if (is_dev_kvm(path)) return fill_kvm_stat(reinterpret_cast<struct stat*>(st)), 0;
  NEXT(lstat64);
  return real(path, st);
}
__attribute__((visibility("default"))) int fstat(int fd, struct stat* st) {
  if (anykvm::kvmapi::is_kvm_fd(fd)) return fill_fd_stat(fd, st), 0;
  NEXT(fstat);
  return real(fd, st);
}
__attribute__((visibility("default"))) int fstat64(int fd, struct stat64* st) {
  if (anykvm::kvmapi::is_kvm_fd(fd)) return fill_fd_stat(fd, reinterpret_cast<struct stat*>(st)), 0;
  NEXT(fstat64);
  return real(fd, st);
}
__attribute__((visibility("default"))) int fstatat(int dirfd, const char* path, struct stat* st, int flags) {
  if (is_dev_kvm(path)) return fill_kvm_stat(st), 0;
  if (is_our_empty_path(dirfd, path, flags)) return fill_fd_stat(dirfd, st), 0;
  NEXT(fstatat);
  return real(dirfd, path, st, flags);
}
__attribute__((visibility("default"))) int fstatat64(int dirfd, const char* path, struct stat64* st, int flags) {
  if (is_dev_kvm(path)) return fill_kvm_stat(reinterpret_cast<struct stat*>(st)), 0;
  if (is_our_empty_path(dirfd, path, flags)) return fill_fd_stat(dirfd, reinterpret_cast<struct stat*>(st)), 0;
  NEXT(fstatat64);
  return real(dirfd, path, st, flags);
}
// Pre-2.33 glibc binaries call the versioned __xstat family.
__attribute__((visibility("default"))) int __xstat(int ver, const char* path, struct stat* st) {
  if (is_dev_kvm(path)) return fill_kvm_stat(st), 0;
  NEXT(__xstat);
  return real(ver, path, st);
}
__attribute__((visibility("default"))) int __xstat64(int ver, const char* path, struct stat64* st) {
  if (is_dev_kvm(path)) return fill_kvm_stat(reinterpret_cast<struct stat*>(st)), 0;
  NEXT(__xstat64);
  return real(ver, path, st);
}
__attribute__((visibility("default"))) int __lxstat(int ver, const char* path, struct stat* st) {
  if (is_dev_kvm(path)) return fill_kvm_stat(st), 0;
  NEXT(__lxstat);
  return real(ver, path, st);
}
__attribute__((visibility("default"))) int __lxstat64(int ver, const char* path, struct stat64* st) {
  if (is_dev_kvm(path)) return fill_kvm_stat(reinterpret_cast<struct stat*>(st)), 0;
  NEXT(__lxstat64);
  return real(ver, path, st);
}
__attribute__((visibility("default"))) int __fxstat(int ver, int fd, struct stat* st) {
  if (anykvm::kvmapi::is_kvm_fd(fd)) return fill_fd_stat(fd, st), 0;
  NEXT(__fxstat);
  return real(ver, fd, st);
}
__attribute__((visibility("default"))) int __fxstat64(int ver, int fd, struct stat64* st) {
  if (anykvm::kvmapi::is_kvm_fd(fd)) return fill_fd_stat(fd, reinterpret_cast<struct stat*>(st)), 0;
  NEXT(__fxstat64);
  return real(ver, fd, st);
}

// coreutils (ls, stat) use statx.
__attribute__((visibility("default"))) int statx(int dirfd, const char* path, int flags, unsigned int mask,
                                                 struct statx* sx) {
  if (is_dev_kvm(path) || is_our_empty_path(dirfd, path, flags)) {
    struct stat st;
    if (is_dev_kvm(path)) fill_kvm_stat(&st);
    else fill_fd_stat(dirfd, &st);
    fill_statx(st, sx);
    return 0;
  }
  NEXT(statx);
  return real(dirfd, path, flags, mask, sx);
}

__attribute__((visibility("default"))) int access(const char* path, int mode) {
  if (is_dev_kvm(path)) return (mode & X_OK) ? (errno = EACCES, -1) : 0;
  NEXT(access);
  return real(path, mode);
}
__attribute__((visibility("default"))) int faccessat(int dirfd, const char* path, int mode, int flags) {
  if (is_dev_kvm(path)) return (mode & X_OK) ? (errno = EACCES, -1) : 0;
  NEXT(faccessat);
  return real(dirfd, path, mode, flags);
}
__attribute__((visibility("default"))) int euidaccess(const char* path, int mode) {
  if (is_dev_kvm(path)) return (mode & X_OK) ? (errno = EACCES, -1) : 0;
  NEXT(euidaccess);
  return real(path, mode);
}

}  // extern "C"

// The KVM API served from user space: fds for /dev/kvm, VMs and vCPUs, and
// ioctl dispatch with Linux's numbers, structs and errno. This header is
// engine- and libc-hook-free; interpose/ calls it. Any thread.
#pragma once
#include <cstdint>
#include <span>

namespace anykvm::kvmapi {

// open("/dev/kvm", flags): a new fd served by anykvm, or -errno.
int open_system(int flags);
// Is `fd` one of ours?
bool is_kvm_fd(int fd);
// An fd this process inherited across exec from an anykvm process (a KVM fd
// opened without O_CLOEXEC, or with it cleared): recognised by the name of
// its memfd and adopted as Linux would see it: a /dev/kvm fd works again, a
// VM or vCPU fd belongs to another mm (EIO). False if `fd` is not such an fd.
bool adopt_inherited(int fd);
// ioctl on one of our fds: >= 0 on success, -errno on failure (ENOTTY for an
// unknown request, as Linux). `request` is compared on its low 32 bits.
long ioctl(int fd, unsigned long request, unsigned long arg);
// fd bookkeeping so an object lives while any fd refers to it.
void on_close(int fd);
void on_close_range(unsigned first, unsigned last);  // close_range(first, last, 0)
void on_dup(int oldfd, int newfd);

struct CapInfo {
  const char* name;
  int number;
  long value;
  const char* why;
};
std::span<const CapInfo> capabilities();
long check_extension(long cap);

enum class FdKind : uint8_t { Sys, Vm, Vcpu };
struct IoctlInfo {
  const char* name;
  uint32_t number;
  FdKind kind;
  const char* arg;  // "none" (must be 0), "value", "pointer" or "ignored"
};
std::span<const IoctlInfo> ioctls();
const char* fd_kind_name(FdKind k);
// The kind of object behind one of our fds; false if `fd` is not ours.
bool fd_kind(int fd, FdKind& kind);

constexpr int k_api_version = 12;

}  // namespace anykvm::kvmapi

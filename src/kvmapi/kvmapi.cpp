// Fd table, ioctl dispatch from ioctls.def, and the /dev/kvm and VM ioctls
// with Linux 6.1's argument checks and errno (virt/kvm/kvm_main.c,
// arch/x86/kvm/x86.c). vCPU ioctls are in vcpu_ioctls.cpp.
#include "kvmapi/kvmapi.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kvmapi/handles.h"
#include "kvmapi/usercopy.h"

namespace anykvm::kvmapi {

namespace {

std::mutex g_table_lock;
std::unordered_map<int, std::shared_ptr<Handle>>& table() {
  static auto* t = new std::unordered_map<int, std::shared_ptr<Handle>>();  // never destroyed: used at exit
  return *t;
}

const CapInfo k_caps[] = {
#define CAP(name, value, why) {"KVM_CAP_" #name, KVM_CAP_##name, value, why},
#include "kvmapi/caps.def"
#undef CAP
};

}  // namespace
}  // namespace anykvm::kvmapi
extern "C" const uint32_t anykvm_ioctl_numbers[];
namespace anykvm::kvmapi {

// Handlers, defined below, in irqchip_ioctls.cpp (VM rows of the irqchip) and
// in vcpu_ioctls.cpp (vCPU rows). External linkage so other files can define some.
#define IOCTL_Sys(name) long ioctl_Sys_##name(Handle&, unsigned long);
#define IOCTL_Vm(name) long ioctl_Vm_##name(Handle&, unsigned long);
#define IOCTL_Vcpu(name)
#define IOCTL(name, kind, argkind) IOCTL_##kind(name)
#include "kvmapi/ioctls.def"
#undef IOCTL
#undef IOCTL_Sys
#undef IOCTL_Vm
#undef IOCTL_Vcpu

namespace {

enum class ArgKind : uint8_t { None, Int, Ptr, Any };
using IoctlHandler = long (*)(Handle&, unsigned long);

struct Row {
  const char* name;
  FdKind kind;
  ArgKind arg;
  IoctlHandler handler;
};

#define IOCTL_Sys(name) ioctl_Sys_##name
#define IOCTL_Vm(name) ioctl_Vm_##name
#define IOCTL_Vcpu(name) vcpu_row_handler(#name)
IoctlHandler vcpu_row_handler(const char*) { return nullptr; }  // vCPU rows dispatch in vcpu_ioctls.cpp
const Row k_rows[] = {
#define IOCTL(name, kind, argkind) {"KVM_" #name, FdKind::kind, ArgKind::argkind, IOCTL_##kind(name)},
#include "kvmapi/ioctls.def"
#undef IOCTL
};
#undef IOCTL_Sys
#undef IOCTL_Vm
#undef IOCTL_Vcpu
constexpr size_t k_nrows = sizeof(k_rows) / sizeof(k_rows[0]);

const std::vector<IoctlInfo>& ioctl_infos() {
  static const std::vector<IoctlInfo> v = [] {
    std::vector<IoctlInfo> out;
    static const char* const arg_names[] = {"none", "value", "pointer", "ignored"};  // ArgKind order
    for (size_t i = 0; i < k_nrows; ++i)
      out.push_back({k_rows[i].name, anykvm_ioctl_numbers[i], k_rows[i].kind, arg_names[size_t(k_rows[i].arg)]});
    return out;
  }();
  return v;
}

// A fresh kernel fd to stand for a KVM object: an empty memfd (closes like any
// fd; its name lets an exec'ed image recognise it, see adopt_inherited).
constexpr const char* k_sys_memfd = "anykvm:dev-kvm";
constexpr const char* k_vm_memfd = "anykvm:kvm-vm";
constexpr const char* k_vcpu_memfd = "anykvm:kvm-vcpu";  // created by machine::Vm
int new_object_fd(const char* name, bool cloexec) {
  int fd = memfd_create(name, cloexec ? MFD_CLOEXEC : 0);
  return fd < 0 ? -errno : fd;
}

}  // namespace

// ---- /dev/kvm ----

long ioctl_Sys_GET_API_VERSION(Handle&, unsigned long) { return k_api_version; }

long ioctl_Sys_CHECK_EXTENSION(Handle&, unsigned long arg) { return check_extension(long(arg)); }

long ioctl_Sys_CREATE_VM(Handle&, unsigned long arg) {
  if (arg != 0) return -EINVAL;  // only the default machine type on x86
  auto h = std::make_shared<Handle>();
  h->kind = FdKind::Vm;
  h->owner = getpid();
  h->vm = machine::Vm::create();
  int fd = new_object_fd(k_vm_memfd, true);  // anon_inode_getfd(..., O_RDWR | O_CLOEXEC)
  if (fd < 0) return fd;
  return install(std::move(h), fd);
}

long ioctl_Sys_GET_VCPU_MMAP_SIZE(Handle&, unsigned long) { return machine::k_vcpu_mmap_size; }

long ioctl_Sys_GET_MSR_INDEX_LIST(Handle&, unsigned long arg) {
  kvm_msr_list hdr;
  if (!copy_from_user(&hdr, arg, anykvm_off_msr_list_indices)) return -EFAULT;
  const std::vector<uint32_t> list = cpu::soft_msr_index_list();
  const uint32_t asked = hdr.nmsrs;
  hdr.nmsrs = uint32_t(list.size());
  if (!copy_to_user(arg, &hdr, anykvm_off_msr_list_indices)) return -EFAULT;
  if (asked < list.size()) return -E2BIG;
  if (!copy_to_user(arg + anykvm_off_msr_list_indices, list.data(), list.size() * sizeof(uint32_t))) return -EFAULT;
  return 0;
}

constexpr uint32_t k_max_cpuid_entries = 256;  // KVM_MAX_CPUID_ENTRIES

long ioctl_Sys_GET_SUPPORTED_CPUID(Handle&, unsigned long arg) {
  kvm_cpuid2 hdr;
  if (!copy_from_user(&hdr, arg, anykvm_off_cpuid2_entries)) return -EFAULT;
  if (hdr.nent < 1) return -E2BIG;
  if (hdr.nent > k_max_cpuid_entries) hdr.nent = k_max_cpuid_entries;
  const std::vector<cpu::CpuidEntry> list = cpu::soft_supported_cpuid();
  if (list.size() > hdr.nent) return -E2BIG;
  hdr.nent = uint32_t(list.size());
  if (!copy_cpuid_entries_to_user(arg, list)) return -EFAULT;
  if (!copy_to_user(arg, &hdr, anykvm_off_cpuid2_entries)) return -EFAULT;
  return 0;
}

// ---- VM ----

long ioctl_Vm_CHECK_EXTENSION(Handle&, unsigned long arg) { return check_extension(long(arg)); }

long ioctl_Vm_CREATE_VCPU(Handle& vmh, unsigned long arg) {
  // kvm_vm_ioctl_create_vcpu(struct kvm *, u32 id): 6.1 drops the upper half.
  auto v = vmh.vm->create_vcpu(uint32_t(arg));
  if (!v) return -v.error();
  auto h = std::make_shared<Handle>();
  h->kind = FdKind::Vcpu;
  h->owner = vmh.owner;
  h->vm = vmh.vm;
  h->vcpu = *v;
  // The client's fd is a dup of the run-area memfd, so its own mmap works.
  int fd = fcntl(h->vcpu->memfd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return -errno;
  return install(std::move(h), fd);
}

long ioctl_Vm_SET_USER_MEMORY_REGION(Handle& h, unsigned long arg) {
  kvm_userspace_memory_region r;
  if (!copy_from_user(&r, arg, sizeof(r))) return -EFAULT;
  machine::MemoryRegionRequest req{r.slot, r.flags, r.guest_phys_addr, r.memory_size, r.userspace_addr};
  auto res = h.vm->memslots().set(req);
  return res ? 0 : -res.error();
}

long ioctl_Vm_GET_DIRTY_LOG(Handle& h, unsigned long arg) {
  kvm_dirty_log log;
  if (!copy_from_user(&log, arg, sizeof(log))) return -EFAULT;
  std::vector<uint64_t> bits;
  auto res = h.vm->memslots().take_dirty_log(log.slot, bits);
  if (!res) return -res.error();
  if (!copy_to_user(reinterpret_cast<unsigned long>(log.dirty_bitmap), bits.data(), bits.size() * 8)) return -EFAULT;
  return 0;
}

long ioctl_Vm_SET_TSS_ADDR(Handle& h, unsigned long arg) {
  auto res = h.vm->set_tss_addr(arg);
  return res ? 0 : -res.error();
}

long ioctl_Vm_SET_IDENTITY_MAP_ADDR(Handle& h, unsigned long arg) {
  if (h.vm->vcpu_count()) return -EINVAL;  // x86.c checks created_vcpus before the copy
  uint64_t addr;
  if (!copy_from_user(&addr, arg, sizeof(addr))) return -EFAULT;
  auto res = h.vm->set_identity_map_addr(addr);
  return res ? 0 : -res.error();
}

long ioctl_Vm_ENABLE_CAP(Handle& h, unsigned long arg) {
  kvm_enable_cap cap;
  if (!copy_from_user(&cap, arg, sizeof(cap))) return -EFAULT;
  if (cap.flags) return -EINVAL;
  if (cap.cap == KVM_CAP_SPLIT_IRQCHIP) return enable_split_irqchip(h, cap.args[0]);  // irqchip_ioctls.cpp
  return -EINVAL;  // no other VM capability is enableable yet (Linux: EINVAL for unknown caps and flags)
}

// ---- fd table ----

std::shared_ptr<Handle> lookup(int fd) {
  std::lock_guard<std::mutex> g(g_table_lock);
  auto it = table().find(fd);
  return it == table().end() ? nullptr : it->second;
}

int install(std::shared_ptr<Handle> h, int fd) {
  std::lock_guard<std::mutex> g(g_table_lock);
  table()[fd] = std::move(h);
  return fd;
}

int open_system(int flags) {
  int fd = new_object_fd(k_sys_memfd, flags & O_CLOEXEC);
  if (fd < 0) return fd;
  auto h = std::make_shared<Handle>();
  h->kind = FdKind::Sys;
  h->owner = getpid();
  return install(std::move(h), fd);
}

bool is_kvm_fd(int fd) { return lookup(fd) != nullptr; }

bool adopt_inherited(int fd) {
  char link[48], target[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n <= 0) return false;
  target[n] = 0;
  auto is = [&](const char* name) {
    char want[64];
    snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
    return strcmp(target, want) == 0;
  };
  auto h = std::make_shared<Handle>();
  if (is(k_sys_memfd)) {
    h->kind = FdKind::Sys;
    h->owner = getpid();
  } else if (is(k_vm_memfd) || is(k_vcpu_memfd)) {
    h->kind = is(k_vm_memfd) ? FdKind::Vm : FdKind::Vcpu;
    h->owner = 0;  // the VM stayed in the image before exec: every ioctl is EIO, as for another mm
  } else {
    return false;
  }
  std::lock_guard<std::mutex> g(g_table_lock);
  table().emplace(fd, std::move(h));  // keeps an entry another thread installed first
  return true;
}

bool fd_kind(int fd, FdKind& kind) {
  std::shared_ptr<Handle> h = lookup(fd);
  if (h) kind = h->kind;
  return h != nullptr;
}

void on_close_range(unsigned first, unsigned last) {
  std::vector<std::shared_ptr<Handle>> dropped;  // destroyed outside the lock
  std::lock_guard<std::mutex> g(g_table_lock);
  for (auto it = table().begin(); it != table().end();) {
    if (unsigned(it->first) >= first && unsigned(it->first) <= last) {
      dropped.push_back(std::move(it->second));
      it = table().erase(it);
    } else {
      ++it;
    }
  }
}

void on_close(int fd) {
  std::shared_ptr<Handle> dropped;  // destroyed outside the lock
  std::lock_guard<std::mutex> g(g_table_lock);
  auto it = table().find(fd);
  if (it != table().end()) {
    dropped = std::move(it->second);
    table().erase(it);
  }
}

void on_dup(int oldfd, int newfd) {
  std::shared_ptr<Handle> dropped;  // newfd's old object, destroyed outside the lock
  std::lock_guard<std::mutex> g(g_table_lock);
  auto& t = table();
  std::shared_ptr<Handle> src;
  if (auto it = t.find(oldfd); it != t.end()) src = it->second;  // copied first: inserting may rehash
  if (auto it = t.find(newfd); it != t.end()) {
    dropped = std::move(it->second);
    t.erase(it);
  }
  if (src) t.emplace(newfd, std::move(src));
}

std::span<const CapInfo> capabilities() { return k_caps; }
std::span<const IoctlInfo> ioctls() { return ioctl_infos(); }

const char* fd_kind_name(FdKind k) {
  switch (k) {
    case FdKind::Sys: return "system (/dev/kvm)";
    case FdKind::Vm: return "VM";
    case FdKind::Vcpu: return "vCPU";
  }
  return "?";
}

long check_extension(long cap) {
  for (const CapInfo& c : k_caps)
    if (c.number == cap) return c.value;
  return 0;
}

namespace {
long dispatch(int fd, Handle& h, unsigned long request, unsigned long arg);

// ANYKVM_TRACE containing "ioctl": one line per ioctl on stderr (names from ioctls.def).
bool trace_ioctls() {
  static const bool on = [] {
    const char* t = getenv("ANYKVM_TRACE");
    return t && strstr(t, "ioctl");
  }();
  return on;
}

const char* ioctl_name(FdKind kind, uint32_t req) {
  for (const IoctlInfo& i : ioctl_infos())
    if (i.number == req && i.kind == kind) return i.name;
  return "unknown";
}
}  // namespace

long ioctl(int fd, unsigned long request, unsigned long arg) {
  std::shared_ptr<Handle> h = lookup(fd);
  if (!h) return -EBADF;
  long r = dispatch(fd, *h, request, arg);
  if (trace_ioctls() && !(h->kind == FdKind::Vcpu && uint32_t(request) == uint32_t(KVM_RUN)))
    fprintf(stderr, "anykvm: %s fd %d %s (0x%08x) arg 0x%lx -> %ld\n", fd_kind_name(h->kind), fd,
            ioctl_name(h->kind, uint32_t(request)), uint32_t(request), arg, r);
  return r;
}

namespace {
// Requests the VFS answers before any driver sees them (fs/ioctl.c
// do_vfs_ioctl), so they work on KVM fds too: applied to our kernel fd.
bool vfs_ioctl(int fd, uint32_t req, unsigned long arg, long& result) {
  switch (req) {
    case FIOCLEX:
    case FIONCLEX:
    case FIONBIO:
    case FIOASYNC:
      // The raw syscall: inside libanykvm, ioctl() would come back to us.
      result = syscall(SYS_ioctl, fd, (unsigned long)req, arg);
      if (result < 0) result = -errno;
      return true;
  }
  return false;
}

// What Linux 6.1 answers for a request it does not know on each kind of fd.
long unknown_request_errno(FdKind kind, uint32_t req) {
  switch (kind) {
    case FdKind::Sys:
      // kvm_dev_ioctl: the deprecated trace ioctls, then kvm_arch_dev_ioctl's default.
      if (req == uint32_t(KVM_TRACE_ENABLE) || req == uint32_t(KVM_TRACE_PAUSE) || req == uint32_t(KVM_TRACE_DISABLE))
        return -EOPNOTSUPP;
      return -EINVAL;
    case FdKind::Vm: return -ENOTTY;  // kvm_arch_vm_ioctl's default
    case FdKind::Vcpu: return -EINVAL;  // kvm_vcpu_ioctl: non-KVMIO type, and kvm_arch_vcpu_ioctl's default
  }
  return -ENOTTY;
}

long dispatch(int fd, Handle& h, unsigned long request, unsigned long arg) {
  const uint32_t req = uint32_t(request);  // QEMU passes it sign-extended; the kernel truncates
  if (long r; vfs_ioctl(fd, req, arg, r)) return r;
  // kvm_vm_ioctl / kvm_vcpu_ioctl: a VM used from another mm (a fork child) is EIO.
  if (h.kind != FdKind::Sys && h.owner != getpid()) return -EIO;
  if (h.kind == FdKind::Vcpu) {
    if (_IOC_TYPE(req) != KVMIO) return -EINVAL;
    long r = vcpu_ioctl(h, req, arg);
    return r == -ENOTTY ? unknown_request_errno(h.kind, req) : r;
  }
  for (size_t i = 0; i < k_nrows; ++i) {
    if (k_rows[i].kind != h.kind || anykvm_ioctl_numbers[i] != req) continue;
    if (k_rows[i].arg == ArgKind::None && arg != 0) return -EINVAL;
    return k_rows[i].handler(h, arg);
  }
  return unknown_request_errno(h.kind, req);
}
}  // namespace

}  // namespace anykvm::kvmapi

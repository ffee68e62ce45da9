// Objects behind our fds and the fd table. Internal to kvmapi.
#pragma once
#include <sys/types.h>

#include <memory>

#include "kvmapi/kvmapi.h"
#include "machine/vm.h"

namespace anykvm::kvmapi {

struct Handle {
  FdKind kind;
  pid_t owner;  // the process that created it; VM/vCPU ioctls from a fork child get EIO
  std::shared_ptr<machine::Vm> vm;
  std::shared_ptr<machine::Vcpu> vcpu;
};

std::shared_ptr<Handle> lookup(int fd);
int install(std::shared_ptr<Handle> h, int fd);

// Handlers by fd kind (kvmapi.cpp, vcpu_ioctls.cpp).
long vcpu_ioctl(Handle& h, uint32_t request, unsigned long arg);

// irqchip_ioctls.cpp: KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP), and the vCPU
// rows of the in-kernel LAPIC (found by vcpu_ioctls.cpp's table by name).
long enable_split_irqchip(Handle& h, uint64_t pins);
long ioctl_Vcpu_GET_LAPIC(Handle& h, unsigned long arg);
long ioctl_Vcpu_SET_LAPIC(Handle& h, unsigned long arg);
long ioctl_Vcpu_TPR_ACCESS_REPORTING(Handle& h, unsigned long arg);
long ioctl_Vcpu_SET_VAPIC_ADDR(Handle& h, unsigned long arg);

// The entries of a struct kvm_cpuid2 at user address `arg` (after its header),
// for KVM_GET_SUPPORTED_CPUID and KVM_GET_CPUID2. False: EFAULT.
bool copy_cpuid_entries_to_user(unsigned long arg, const std::vector<cpu::CpuidEntry>& list);

}  // namespace anykvm::kvmapi

// copy_from_user / copy_to_user for an in-process "kernel": a bad pointer from
// the client must give EFAULT like Linux, never a crash of the host process.
// process_vm_readv/writev on our own pid validates the range in the kernel.
#pragma once
#include <sys/uio.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace anykvm::kvmapi {

inline bool copy_from_user(void* dst, unsigned long src, size_t n) {
  if (n == 0) return true;
  iovec local{dst, n};
  iovec remote{reinterpret_cast<void*>(src), n};
  return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == ssize_t(n);
}

inline bool copy_to_user(unsigned long dst, const void* src, size_t n) {
  if (n == 0) return true;
  iovec local{const_cast<void*>(src), n};
  iovec remote{reinterpret_cast<void*>(dst), n};
  return process_vm_writev(getpid(), &local, 1, &remote, 1, 0) == ssize_t(n);
}

}  // namespace anykvm::kvmapi

// Flexible-array offsets computed by the C compiler (ioctl_numbers.c).
extern "C" const size_t anykvm_off_msr_list_indices, anykvm_off_cpuid2_entries, anykvm_off_msrs_entries,
    anykvm_off_signal_mask_sigset, anykvm_off_irq_routing_entries;

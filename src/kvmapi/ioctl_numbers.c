/* The ioctl numbers of ioctls.def, computed by a C compiler: <linux/kvm.h>
 * sizes structs with flexible array members (kvm_msr_list, kvm_signal_mask)
 * the way C does, which is what every client (QEMU) uses; g++ can differ. */
#include <linux/kvm.h>
#include <stdint.h>

const uint32_t anykvm_ioctl_numbers[] = {
#define IOCTL(name, kind, argkind) (uint32_t)KVM_##name,
#include "kvmapi/ioctls.def"
#undef IOCTL
};

/* Offsets of the flexible arrays, as C lays them out (g++ 12 places
 * kvm_cpuid2.entries at 12 and sizes kvm_msr_list as 8; C says 8 and 4). */
#include <stddef.h>
const size_t anykvm_off_msr_list_indices = offsetof(struct kvm_msr_list, indices);
const size_t anykvm_off_cpuid2_entries = offsetof(struct kvm_cpuid2, entries);
const size_t anykvm_off_msrs_entries = offsetof(struct kvm_msrs, entries);
const size_t anykvm_off_signal_mask_sigset = offsetof(struct kvm_signal_mask, sigset);
const size_t anykvm_off_irq_routing_entries = offsetof(struct kvm_irq_routing, entries);

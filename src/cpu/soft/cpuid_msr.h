// CPUID answers and model-specific registers of the software CPU (SDM vol. 2
// CPUID; vol. 4 MSR list). One table each (cpuid_msr.cpp) feeds
// KVM_GET_SUPPORTED_CPUID, KVM_GET_MSR_INDEX_LIST, the guest's CPUID/RDMSR/
// WRMSR and the host-initiated KVM_GET/SET_MSRS. vCPU thread only.
#pragma once
#include <cstdint>
#include <mutex>

namespace anykvm::soft {
class Cpu;

// The virtual TSC runs at a fixed 1 GHz (one tick per CLOCK_MONOTONIC
// nanosecond) plus cpu.tsc_offset: KVM_GET_TSC_KHZ must answer k_tsc_khz.
constexpr uint64_t k_tsc_khz = 1000000;
uint64_t host_tsc_count();
uint64_t guest_tsc(const Cpu& c);

// The VM's record of host-initiated TSC writes (Linux 6.1 x86.c
// kvm_synchronize_tsc): a write of 0 (every vCPU's creation, QEMU's reset) or
// of what the previous write has grown to, give or take one second, joins the
// current generation and takes its offset, so the vCPUs' TSCs agree; any other
// value starts a new generation. One per SoftVm; any thread, guarded by lock.
struct TscSync {
  std::mutex lock;
  bool written = false;     // kvm->arch.last_tsc_khz != 0: a generation exists
  uint64_t last_write = 0;  // last_tsc_write
  uint64_t last_host = 0;   // last_tsc_nsec, as a host_tsc_count()
  uint64_t cur_offset = 0;  // cur_tsc_offset
};
// A host-initiated write of `value` to IA32_TSC (KVM_SET_MSRS; 0 when the
// vCPU is created, as kvm_arch_vcpu_postcreate). Sets c.tsc_offset.
void tsc_synchronize(Cpu& c, uint64_t value);

// CPUID as the guest sees it: cpu.cpuid_table (KVM_SET_CPUID2) with KVM's
// out-of-range rule and dynamic bits (OSXSAVE follows CR4, APIC follows
// APIC_BASE.EN). out = {eax, ebx, ecx, edx}.
void cpuid_query(const Cpu& c, uint32_t function, uint32_t index, uint32_t out[4]);

// RDMSR/WRMSR semantics. `host` = host-initiated (KVM_GET/SET_MSRS): read-only
// registers accept writes and guest-only restrictions do not apply.
// false = unknown MSR or invalid value (#GP(0) for the guest).
bool msr_read(Cpu& c, uint32_t index, uint64_t& value, bool host);
bool msr_write(Cpu& c, uint32_t index, uint64_t value, bool host);

// IA32_MCG_CAP we report: bank count and MCG_CTL_P.
uint64_t mcg_cap();
}  // namespace anykvm::soft

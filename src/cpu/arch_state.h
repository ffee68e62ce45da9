// Architectural state exchanged between an engine and the layers above, shaped
// like the KVM uAPI structs (kvm_regs, kvm_sregs, kvm_fpu/kvm_xsave, kvm_debugregs,
// kvm_vcpu_events) but without including <linux/kvm.h>: kvmapi/ converts field by
// field. Leaves out: SMM state, nested state (not supported).
#pragma once
#include <array>
#include <cstdint>

namespace anykvm::cpu {

// Segment register in the unpacked form of struct kvm_segment.
struct Segment {
  uint64_t base = 0;
  uint32_t limit = 0;
  uint16_t selector = 0;
  uint8_t type = 0;
  uint8_t present = 0, dpl = 0, db = 0, s = 0, l = 0, g = 0, avl = 0;
  uint8_t unusable = 0;
};

struct DescriptorTable {
  uint64_t base = 0;
  uint16_t limit = 0;
};

enum class Gpr : uint8_t { Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi, R8, R9, R10, R11, R12, R13, R14, R15 };
enum class SegReg : uint8_t { Es, Cs, Ss, Ds, Fs, Gs };

struct Regs {  // kvm_regs order is rax,rbx,rcx,rdx,...; here indexed by Gpr (encoding order)
  std::array<uint64_t, 16> gpr{};
  uint64_t rip = 0;
  uint64_t rflags = 2;
};

struct SpecialRegs {  // kvm_sregs
  std::array<Segment, 6> seg{};  // indexed by SegReg
  Segment tr, ldt;
  DescriptorTable gdt, idt;
  uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0;
  uint64_t efer = 0;
  uint64_t apic_base = 0;
  std::array<uint64_t, 4> interrupt_bitmap{};  // a pending external interrupt, as in kvm_sregs
};

// The FXSAVE legacy region (512 bytes) plus the XSAVE header and XCR0: the one
// format every FPU ioctl (KVM_GET/SET_FPU, _XSAVE, _XCRS) is derived from.
struct FpuState {
  alignas(64) std::array<uint8_t, 512> fxsave{};
  uint64_t xstate_bv = 3;  // XSAVE header XSTATE_BV: components in use (bit 0 x87, bit 1 SSE)
  uint64_t xcr0 = 1;
};

struct DebugRegs {  // kvm_debugregs
  std::array<uint64_t, 4> db{};
  uint64_t dr6 = 0xffff0ff0;
  uint64_t dr7 = 0x400;
};

// kvm_vcpu_events, the parts an engine owns.
struct Events {
  bool exception_injected = false;
  uint8_t exception_nr = 0;
  bool exception_has_error_code = false;
  uint32_t exception_error_code = 0;
  bool interrupt_injected = false;
  uint8_t interrupt_nr = 0;
  bool interrupt_soft = false;
  uint8_t interrupt_shadow = 0;  // KVM_X86_SHADOW_INT_MOV_SS (1) | _STI (2)
  bool nmi_injected = false;
  bool nmi_pending = false;
  bool nmi_masked = false;
};

struct CpuidEntry {  // kvm_cpuid_entry2
  uint32_t function = 0, index = 0, flags = 0;
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};
constexpr uint32_t k_cpuid_flag_significant_index = 1;  // KVM_CPUID_FLAG_SIGNIFCANT_INDEX

enum class MpState : uint32_t { Runnable = 0, Uninitialized = 1, InitReceived = 2, Halted = 3, SipiReceived = 4 };

}  // namespace anykvm::cpu

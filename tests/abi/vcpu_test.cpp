// vCPU-fd ioctls (virt/kvm/kvm_main.c kvm_vcpu_ioctl, arch/x86/kvm/x86.c
// kvm_arch_vcpu_ioctl, Linux 6.1) and the vCPU mmap area.
#include <sys/mman.h>

#include "abi.h"

namespace abitest {
namespace {

class Vcpu : public Abi {
 protected:
  void SetUp() override {
    Abi::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    m_vm = create_vm();
    m_vcpu = create_vcpu(m_vm, 0);
  }
  // A header of `hdr` bytes ending exactly where a PROT_NONE page starts, so
  // the header is readable and what follows it is not.
  template <typename T>
  T* header_before_hole(size_t hdr) {
    if (!m_two) {
      m_two = static_cast<uint8_t*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      mprotect(m_two + 4096, 4096, PROT_NONE);
    }
    return reinterpret_cast<T*>(m_two + 4096 - hdr);
  }
  void TearDown() override {
    if (m_two) munmap(m_two, 8192);
    Abi::TearDown();
  }
  int m_vm = -1, m_vcpu = -1;
  uint8_t* m_two = nullptr;
};
ABI_SUITE(Vcpu);

// ---- the mmap area ----

TEST_P(Vcpu, MmapRunAreaAndPioPage) {
  // mov al, 0x42 ; out 0x80, al ; hlt
  Guest g = real_mode_guest({0xb0, 0x42, 0xe6, 0x80, 0xf4});
  ASSERT_EQ(mmap_size(), 3u * 4096);
  // The PIO data page alone, mapped at page offset 1.
  void* pio = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, g.vcpu, 4096);
  ASSERT_NE(pio, MAP_FAILED);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_IO));
  EXPECT_EQ(g.run->io.direction, KVM_EXIT_IO_OUT);
  EXPECT_EQ(g.run->io.port, 0x80);
  EXPECT_EQ(g.run->io.size, 1);
  EXPECT_EQ(g.run->io.count, 1u);
  EXPECT_EQ(g.run->io.data_offset, 4096u) << "KVM_PIO_PAGE_OFFSET";
  EXPECT_EQ(reinterpret_cast<uint8_t*>(g.run)[g.run->io.data_offset], 0x42);
  EXPECT_EQ(static_cast<uint8_t*>(pio)[0], 0x42) << "the same page through a second mapping";
  // Two mappings of offset 0 see the same kvm_run.
  auto* again = static_cast<kvm_run*>(mmap(nullptr, 4096, PROT_READ, MAP_SHARED, g.vcpu, 0));
  ASSERT_NE(static_cast<void*>(again), MAP_FAILED);
  EXPECT_EQ(again->exit_reason, uint32_t(KVM_EXIT_IO));
  munmap(again, 4096);
  munmap(pio, 4096);
  ASSERT_EQ(run(g), 0);
  EXPECT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
}

TEST_P(Vcpu, InDataSuppliedThroughPioPageOnReentry) {
  // in al, 0x60 ; mov [0x1800], al ; hlt
  Guest g = real_mode_guest({0xe4, 0x60, 0xa2, 0x00, 0x18, 0xf4});
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_IO));
  EXPECT_EQ(g.run->io.direction, KVM_EXIT_IO_IN);
  EXPECT_EQ(g.run->io.port, 0x60);
  reinterpret_cast<uint8_t*>(g.run)[g.run->io.data_offset] = 0x9c;
  ASSERT_EQ(run(g), 0);
  EXPECT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
  EXPECT_EQ(g.code->ptr[0x800], 0x9c);
}

TEST_P(Vcpu, RunWithArgumentIsEinval) {
  EXPECT_EQ(io(m_vcpu, KVM_RUN, 1ul), -EINVAL);
}

TEST_P(Vcpu, GuestFetchingOutsideMemoryIsAnEmulationError) {
  // jmp 0x0000:0x3000 (no slot there)
  Guest g = real_mode_guest({0xea, 0x00, 0x30, 0x00, 0x00});
  long r = run(g);
  ASSERT_EQ(r, 0);
  // Linux cannot fetch from MMIO either: an emulation failure.
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_INTERNAL_ERROR));
  EXPECT_EQ(g.run->internal.suberror, uint32_t(KVM_INTERNAL_ERROR_EMULATION));
  // The vCPU is still usable.
  kvm_regs regs;
  EXPECT_EQ(io(g.vcpu, KVM_GET_REGS, &regs), 0);
}

// ---- registers ----

TEST_P(Vcpu, Regs) {
  EXPECT_EQ(io(m_vcpu, KVM_GET_REGS, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(m_vcpu, KVM_SET_REGS, bad_ptr()), -EFAULT);
  kvm_regs r;
  ASSERT_EQ(io(m_vcpu, KVM_GET_REGS, &r), 0);
  EXPECT_EQ(r.rip, 0xfff0u) << "reset state";
  EXPECT_EQ(r.rflags, 2u);
  __u64* g = &r.rax;
  for (int i = 0; i < 16; ++i) g[i] = 0x1111111111111111ull * uint64_t(i + 1);
  r.rip = 0x1234;
  r.rflags = 0x202;
  ASSERT_EQ(io(m_vcpu, KVM_SET_REGS, &r), 0);
  kvm_regs back;
  ASSERT_EQ(io(m_vcpu, KVM_GET_REGS, &back), 0);
  EXPECT_EQ(memcmp(&r, &back, sizeof(r)), 0);
}

TEST_P(Vcpu, Sregs) {
  EXPECT_EQ(io(m_vcpu, KVM_GET_SREGS, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, bad_ptr()), -EFAULT);
  kvm_sregs s;
  ASSERT_EQ(io(m_vcpu, KVM_GET_SREGS, &s), 0);
  EXPECT_EQ(s.cs.selector, 0xf000);
  EXPECT_EQ(s.cs.base, 0xffff0000u);
  EXPECT_EQ(s.cr0, 0x60000010u);
  const kvm_sregs reset = s;
  s.cr2 = 0x1234000;
  s.gdt.base = 0x5000;
  s.gdt.limit = 0x17;
  s.cr0 |= 1;
  ASSERT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), 0);
  kvm_sregs back;
  ASSERT_EQ(io(m_vcpu, KVM_GET_SREGS, &back), 0);
  EXPECT_EQ(back.cr2, s.cr2);
  EXPECT_EQ(back.gdt.base, s.gdt.base);
  EXPECT_EQ(back.gdt.limit, s.gdt.limit);
  EXPECT_EQ(back.cr0, s.cr0);
  // kvm_is_valid_sregs.
  s = reset;
  s.efer |= 1u << 10;  // LMA without LME+PG
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.cr0 = 0x80000010;  // PG without PE
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.cs.l = 1;  // a 64-bit code segment outside long mode
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.cr0 |= 1ull << 32;  // reserved upper half
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.cr0 = (s.cr0 & ~(1ull << 30)) | (1ull << 29);  // NW without CD
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.efer = (1u << 8) | (1u << 10);  // LME+LMA with PG but no PAE
  s.cr0 = 0x80000011;
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.cr4 |= 1u << 31;  // CR4_RESERVED_BITS
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.cr4 |= 1u << 15;
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.apic_base |= 1;  // kvm_set_apic_base: bits 0-7 and 9 are reserved
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.apic_base |= 1ull << 60;  // above MAXPHYADDR
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.apic_base = (s.apic_base & ~(1ull << 11)) | (1ull << 10);  // x2APIC mode without enable
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), -EINVAL);
  s = reset;
  s.apic_base &= ~(1ull << 11);  // disabling the APIC is a valid mode
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), 0);
  s.apic_base = reset.apic_base;
  s.cr0 = reset.cr0 | 1;
  EXPECT_EQ(io(m_vcpu, KVM_SET_SREGS, &s), 0);
  // Nothing of the refused calls stuck.
  ASSERT_EQ(io(m_vcpu, KVM_GET_SREGS, &back), 0);
  EXPECT_EQ(back.cr0, (reset.cr0 | 1));
}

TEST_P(Vcpu, Fpu) {
  EXPECT_EQ(io(m_vcpu, KVM_GET_FPU, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(m_vcpu, KVM_SET_FPU, bad_ptr()), -EFAULT);
  kvm_fpu f;
  ASSERT_EQ(io(m_vcpu, KVM_GET_FPU, &f), 0);
  EXPECT_EQ(f.fcw, 0x37f) << "FNINIT state";
  EXPECT_EQ(f.mxcsr, 0u) << "Linux's KVM_GET_FPU never fills mxcsr";
  f.fcw = 0x27f;
  f.mxcsr = 0x1f00;
  f.fpr[0][0] = 0x42;
  f.xmm[3][5] = 0x99;
  ASSERT_EQ(io(m_vcpu, KVM_SET_FPU, &f), 0);
  kvm_fpu back;
  ASSERT_EQ(io(m_vcpu, KVM_GET_FPU, &back), 0);
  EXPECT_EQ(back.fcw, 0x27f);
  EXPECT_EQ(back.mxcsr, 0u) << "KVM_SET_FPU ignores mxcsr (KVM_SET_XSAVE sets it)";
  EXPECT_EQ(back.fpr[0][0], 0x42);
  EXPECT_EQ(back.xmm[3][5], 0x99);
}

TEST_P(Vcpu, Msrs) {
  EXPECT_EQ(io(m_vcpu, k_GET_MSRS, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(m_vcpu, k_SET_MSRS, bad_ptr()), -EFAULT);
  MsrsBuf m{};
  m.nmsrs = 256;  // MAX_IO_MSRS
  EXPECT_EQ(io(m_vcpu, k_GET_MSRS, &m), -E2BIG);
  EXPECT_EQ(io(m_vcpu, k_SET_MSRS, &m), -E2BIG);
  auto* hole = header_before_hole<MsrsBuf>(8);
  hole->nmsrs = 1;
  EXPECT_EQ(io(m_vcpu, k_GET_MSRS, hole), -EFAULT) << "entries unreadable";
  m.nmsrs = 3;
  m.e[0].index = 0x174;  // IA32_SYSENTER_CS
  m.e[0].data = 0x10;
  m.e[1].index = 0xdeadbeef;
  m.e[2].index = 0x175;
  EXPECT_EQ(io(m_vcpu, k_SET_MSRS, &m), 1) << "stops at the first MSR it cannot set";
  m.e[0].data = 0;
  EXPECT_EQ(io(m_vcpu, k_GET_MSRS, &m), 1);
  EXPECT_EQ(m.e[0].data, 0x10u);
  m.nmsrs = 0;
  EXPECT_EQ(io(m_vcpu, k_GET_MSRS, &m), 0);
}

TEST_P(Vcpu, Cpuid2) {
  auto sup = std::make_unique<CpuidBuf>();
  sup->nent = 256;
  ASSERT_EQ(sys(k_GET_SUPPORTED_CPUID, sup.get()), 0);
  EXPECT_EQ(io(m_vcpu, k_SET_CPUID2, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(m_vcpu, k_GET_CPUID2, bad_ptr()), -EFAULT);
  auto big = std::make_unique<CpuidBuf>();
  big->nent = 257;  // KVM_MAX_CPUID_ENTRIES + 1
  EXPECT_EQ(io(m_vcpu, k_SET_CPUID2, big.get()), -E2BIG);
  auto* hole = header_before_hole<CpuidBuf>(8);
  hole->nent = 2;
  EXPECT_EQ(io(m_vcpu, k_SET_CPUID2, hole), -EFAULT);
  ASSERT_EQ(io(m_vcpu, k_SET_CPUID2, sup.get()), 0);
  auto got = std::make_unique<CpuidBuf>();
  got->nent = sup->nent - 1;
  EXPECT_EQ(io(m_vcpu, k_GET_CPUID2, got.get()), -E2BIG);
  EXPECT_EQ(got->nent, sup->nent - 1) << "on E2BIG the count is not copied back";
  got->nent = 256;
  ASSERT_EQ(io(m_vcpu, k_GET_CPUID2, got.get()), 0);
  if (!on_linux()) {
    EXPECT_EQ(got->nent, 256u) << "6.1: on success nent is left as the caller gave it";
  }
  EXPECT_EQ(got->e[0].function, sup->e[0].function);
  EXPECT_EQ(got->e[0].ebx, sup->e[0].ebx);
  hole->nent = 256;
  EXPECT_EQ(io(m_vcpu, k_GET_CPUID2, hole), -EFAULT) << "entries unwritable";
}

TEST_P(Vcpu, MpState) {
  EXPECT_EQ(io(m_vcpu, KVM_GET_MP_STATE, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(m_vcpu, KVM_SET_MP_STATE, bad_ptr()), -EFAULT);
  kvm_mp_state m{99};
  ASSERT_EQ(io(m_vcpu, KVM_GET_MP_STATE, &m), 0);
  EXPECT_EQ(m.mp_state, uint32_t(KVM_MP_STATE_RUNNABLE));
  ASSERT_EQ(io(m_vcpu, KVM_SET_MP_STATE, &m), 0);
  // Without an in-kernel LAPIC only RUNNABLE is accepted.
  for (uint32_t s : {uint32_t(KVM_MP_STATE_HALTED), uint32_t(KVM_MP_STATE_UNINITIALIZED), uint32_t(KVM_MP_STATE_INIT_RECEIVED), 99u}) {
    m.mp_state = s;
    EXPECT_EQ(io(m_vcpu, KVM_SET_MP_STATE, &m), -EINVAL) << s;
  }
}

TEST_P(Vcpu, VcpuEvents) {
  EXPECT_EQ(io(m_vcpu, KVM_GET_VCPU_EVENTS, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(m_vcpu, KVM_SET_VCPU_EVENTS, bad_ptr()), -EFAULT);
  kvm_vcpu_events e;
  ASSERT_EQ(io(m_vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
  const uint32_t always = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
  EXPECT_EQ(e.flags & always, always);
  const kvm_vcpu_events clean = e;
  ASSERT_EQ(io(m_vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
  e.flags |= 1u << 20;
  EXPECT_EQ(io(m_vcpu, KVM_SET_VCPU_EVENTS, &e), -EINVAL);
  e = clean;
  e.flags |= KVM_VCPUEVENT_VALID_PAYLOAD;  // needs KVM_CAP_EXCEPTION_PAYLOAD enabled
  EXPECT_EQ(io(m_vcpu, KVM_SET_VCPU_EVENTS, &e), -EINVAL);
  e = clean;
  e.exception.injected = 1;
  e.exception.nr = 2;  // NMI is not an exception
  EXPECT_EQ(io(m_vcpu, KVM_SET_VCPU_EVENTS, &e), -EINVAL);
  e.exception.nr = 32;
  EXPECT_EQ(io(m_vcpu, KVM_SET_VCPU_EVENTS, &e), -EINVAL);
  e = clean;
  e.exception.pending = 1;  // ignored without KVM_VCPUEVENT_VALID_PAYLOAD
  e.exception.nr = 2;
  EXPECT_EQ(io(m_vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
  ASSERT_EQ(io(m_vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
  EXPECT_EQ(e.exception.injected, 0);
}

TEST_P(Vcpu, VcpuEventsInjectedExceptionRoundTrip) {
  // Linux keeps an injected exception in the events until the next entry
  // delivers it; anykvm's engine delivers it inside KVM_SET_VCPU_EVENTS.
  if (!on_linux()) GTEST_SKIP() << "anykvm difference: see docs/abi-differences.md";
  kvm_vcpu_events e;
  ASSERT_EQ(io(m_vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
  e.exception.injected = 1;
  e.exception.nr = 13;
  e.exception.has_error_code = 1;
  e.exception.error_code = 0x18;
  ASSERT_EQ(io(m_vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
  kvm_vcpu_events back;
  ASSERT_EQ(io(m_vcpu, KVM_GET_VCPU_EVENTS, &back), 0);
  EXPECT_EQ(back.exception.injected, 1);
  EXPECT_EQ(back.exception.nr, 13);
  EXPECT_EQ(back.exception.error_code, 0x18u);
}

TEST_P(Vcpu, DebugRegs) {
  EXPECT_EQ(io(m_vcpu, KVM_GET_DEBUGREGS, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(m_vcpu, KVM_SET_DEBUGREGS, bad_ptr()), -EFAULT);
  kvm_debugregs d;
  ASSERT_EQ(io(m_vcpu, KVM_GET_DEBUGREGS, &d), 0);
  EXPECT_EQ(d.dr6, 0xffff0ff0u);
  EXPECT_EQ(d.dr7, 0x400u);
  const kvm_debugregs reset = d;
  d.flags = 1;
  EXPECT_EQ(io(m_vcpu, KVM_SET_DEBUGREGS, &d), -EINVAL);
  d = reset;
  d.dr6 |= 1ull << 32;
  EXPECT_EQ(io(m_vcpu, KVM_SET_DEBUGREGS, &d), -EINVAL);
  d = reset;
  d.dr7 |= 1ull << 40;
  EXPECT_EQ(io(m_vcpu, KVM_SET_DEBUGREGS, &d), -EINVAL);
  d = reset;
  d.db[0] = 0x1000;
  d.db[3] = 0x2000;
  d.dr7 = 0x401;
  ASSERT_EQ(io(m_vcpu, KVM_SET_DEBUGREGS, &d), 0);
  kvm_debugregs back;
  ASSERT_EQ(io(m_vcpu, KVM_GET_DEBUGREGS, &back), 0);
  EXPECT_EQ(back.db[0], 0x1000u);
  EXPECT_EQ(back.db[3], 0x2000u);
  EXPECT_EQ(back.dr7, 0x401u);
}

TEST_P(Vcpu, Interrupt) {
  EXPECT_EQ(io(m_vcpu, KVM_INTERRUPT, bad_ptr()), -EFAULT);
  kvm_interrupt i{256};
  EXPECT_EQ(io(m_vcpu, KVM_INTERRUPT, &i), -EINVAL);  // KVM_NR_INTERRUPTS
  i.irq = 0x20;
  EXPECT_EQ(io(m_vcpu, KVM_INTERRUPT, &i), 0);
  i.irq = 0x21;
  EXPECT_EQ(io(m_vcpu, KVM_INTERRUPT, &i), 0) << "replaces the queued one (no in-kernel irqchip)";
  kvm_vcpu_events e;
  ASSERT_EQ(io(m_vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
  EXPECT_EQ(e.interrupt.injected, 1);
  EXPECT_EQ(e.interrupt.nr, 0x21);
}

TEST_P(Vcpu, Nmi) {
  EXPECT_EQ(io(m_vcpu, KVM_NMI), 0);
  EXPECT_EQ(io(m_vcpu, KVM_NMI, 1ul), 0) << "the argument is ignored";
}

TEST_P(Vcpu, SetSignalMask) {
  EXPECT_EQ(io(m_vcpu, k_SET_SIGNAL_MASK, 0ul), 0) << "NULL clears the mask";
  EXPECT_EQ(io(m_vcpu, k_SET_SIGNAL_MASK, bad_ptr()), -EFAULT);
  alignas(8) uint8_t buf[16] = {};
  auto* m = reinterpret_cast<SigmaskBuf*>(buf);
  m->len = 4;
  EXPECT_EQ(io(m_vcpu, k_SET_SIGNAL_MASK, m), -EINVAL) << "len must be sizeof the kernel sigset (8)";
  m->len = 128;
  EXPECT_EQ(io(m_vcpu, k_SET_SIGNAL_MASK, m), -EINVAL);
  m->len = 8;
  EXPECT_EQ(io(m_vcpu, k_SET_SIGNAL_MASK, m), 0);
  auto* hole = header_before_hole<SigmaskBuf>(4);
  hole->len = 8;
  EXPECT_EQ(io(m_vcpu, k_SET_SIGNAL_MASK, hole), -EFAULT) << "sigset unreadable";
}

TEST_P(Vcpu, EnableCap) {
  kvm_enable_cap cap{};
  EXPECT_EQ(io(m_vcpu, KVM_ENABLE_CAP, bad_ptr()), -EFAULT);
  cap.cap = 0x7fffffff;
  EXPECT_EQ(io(m_vcpu, KVM_ENABLE_CAP, &cap), -EINVAL);
  cap.cap = KVM_CAP_HYPERV_SYNIC;
  cap.flags = 1;
  EXPECT_EQ(io(m_vcpu, KVM_ENABLE_CAP, &cap), -EINVAL);
}

}  // namespace
}  // namespace abitest

// The in-kernel LAPIC timer in TSC-deadline mode (SDM vol. 3, 10.5.4.1;
// Linux 6.1 lapic.c kvm_set_lapic_tscdeadline_msr / kvm_get_...): the guest
// arms IA32_TSC_DEADLINE (MSR 0x6e0) with RDTSC + 1 ms and HLTs; each timer
// interrupt re-arms it. Linux 6.1 reports the feature only as
// KVM_CAP_TSC_DEADLINE_TIMER (user space sets CPUID.1:ECX[24] itself, and
// without it the mode cannot be selected).
#include <algorithm>

#include "abi.h"

namespace abitest {
namespace {

class TscDeadline : public Abi {
 protected:
  // KVM_SET_CPUID2 with the supported table, CPUID.1:ECX[24] (TSC-deadline) set or clear.
  void set_cpuid_tsc_deadline(int vcpu, bool on) {
    auto tp = std::make_unique<CpuidBuf>();
    tp->nent = 256;
    ASSERT_EQ(sys(k_GET_SUPPORTED_CPUID, tp.get()), 0);
    for (uint32_t i = 0; i < tp->nent; ++i)
      if (tp->e[i].function == 1) tp->e[i].ecx = on ? tp->e[i].ecx | 1u << 24 : tp->e[i].ecx & ~(1u << 24);
    ASSERT_EQ(io(vcpu, k_SET_CPUID2, tp.get()), 0);
  }
};
ABI_SUITE(TscDeadline);

// Real mode at 0x1000, LAPIC through GS (base 0xfee00000): SVR = 0x1ff;
// LVT timer = vector 0x40, TSC-deadline mode; arm; sti; hlt loop. ISR:
// count at 0x6000, EOI, OUT 0x11 with the count, re-arm, IRET.
// arm: rdtsc; add eax, 1000000; adc edx, 0; mov ecx, 0x6e0; wrmsr; ret.
const std::vector<uint8_t> k_guest = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0x00, 0x01, 0x4c, 0x10, 0xc7,
    0x06, 0x02, 0x01, 0x00, 0x00, 0xc7, 0x06, 0x00, 0x60, 0x00, 0x00, 0x65, 0x66, 0xc7, 0x06, 0xf0, 0x00,
    0xff, 0x01, 0x00, 0x00, 0x65, 0x66, 0xc7, 0x06, 0x20, 0x03, 0x40, 0x00, 0x04, 0x00, 0xe8, 0x04, 0x00,
    0xfb, 0xf4, 0xeb, 0xfd, 0x0f, 0x31, 0x66, 0x05, 0x40, 0x42, 0x0f, 0x00, 0x66, 0x83, 0xd2, 0x00, 0x66,
    0xb9, 0xe0, 0x06, 0x00, 0x00, 0x0f, 0x30, 0xc3, 0xff, 0x06, 0x00, 0x60, 0x65, 0x66, 0xc7, 0x06, 0xb0,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xa1, 0x00, 0x60, 0xe7, 0x11, 0xe8, 0xd5, 0xff, 0xcf};

constexpr uint32_t k_msr_tsc_deadline = 0x6e0;

// mov ecx, 0x6e0; mov eax, 0x1234; xor edx, edx; wrmsr; rdmsr;
// mov [0x1800], eax; mov [0x1804], edx; out 0x10, al; hlt.
const std::vector<uint8_t> k_msr_guest = {0x66, 0xb9, 0xe0, 0x06, 0x00, 0x00, 0x66, 0xb8, 0x34, 0x12, 0x00,
                                          0x00, 0x66, 0x31, 0xd2, 0x0f, 0x30, 0x0f, 0x32, 0x66, 0xa3, 0x00,
                                          0x18, 0x66, 0x89, 0x16, 0x04, 0x18, 0xe6, 0x10, 0xf4};

// mov dword [fs:0x320], 0x00040040 (LVT timer: TSC-deadline mode, vector
// 0x40; FS base is the xAPIC page); out 0x10, al; hlt.
const std::vector<uint8_t> k_lvtt_guest = {0x64, 0x66, 0xc7, 0x06, 0x20, 0x03, 0x40, 0x00,
                                           0x04, 0x00, 0xe6, 0x10, 0xf4};

}  // namespace

// kvm_get/set_msr_common: MSR_IA32_TSC_DEADLINE is in the emulated MSRs that
// KVM_GET_MSR_INDEX_LIST reports; without an in-kernel LAPIC it reads 0 and
// ignores writes (kvm_get/set_lapic_tscdeadline_msr), for the guest and for
// KVM_GET/SET_MSRS alike, whatever the guest's CPUID.
TEST_P(TscDeadline, MsrIsListedAndInertWithoutALapic) {
  MsrListBuf l{};
  l.nmsrs = 1024;
  ASSERT_EQ(sys(k_GET_MSR_INDEX_LIST, &l), 0);
  EXPECT_NE(std::find(l.indices, l.indices + l.nmsrs, k_msr_tsc_deadline), l.indices + l.nmsrs);

  Guest g = real_mode_guest(k_msr_guest);
  std::memset(g.code->ptr + 0x800, 0xff, 8);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_IO)) << "WRMSR/RDMSR 0x6e0 faulted";
  EXPECT_EQ(g.run->io.port, 0x10);
  uint64_t read = ~0ull;
  std::memcpy(&read, g.code->ptr + 0x800, 8);
  EXPECT_EQ(read, 0u);
  MsrsBuf m{};
  m.nmsrs = 1;
  m.e[0].index = k_msr_tsc_deadline;
  m.e[0].data = 0x123456789;
  EXPECT_EQ(io(g.vcpu, k_SET_MSRS, &m), 1);
  m.e[0].data = ~0ull;
  EXPECT_EQ(io(g.vcpu, k_GET_MSRS, &m), 1);
  EXPECT_EQ(m.e[0].data, 0u);
}

// lapic.c apic_update_lvtt / timer_mode_mask (set by KVM_SET_CPUID2 from
// CPUID.1:ECX[24]): the guest selects TSC-deadline mode only when its CPUID
// has the bit; without it the mode bits it writes are dropped (one-shot).
TEST_P(TscDeadline, ModeNeedsTheGuestsCpuidBit) {
  for (bool bit : {false, true}) {
    GuestMem mem(0x2000);
    std::memcpy(mem.ptr + 0x1000, k_lvtt_guest.data(), k_lvtt_guest.size());
    int vm = create_vm();
    ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
    ASSERT_EQ(set_region(vm, 0, 0, 0, mem.size, mem.uaddr()), 0);
    int vcpu = create_vcpu(vm, 0);
    kvm_run* r = map_run(vcpu);
    ASSERT_NO_FATAL_FAILURE(set_cpuid_tsc_deadline(vcpu, bit));
    start_real_mode_at_0x1000(vcpu);
    kvm_sregs s;
    ASSERT_EQ(io(vcpu, KVM_GET_SREGS, &s), 0);
    s.fs.base = 0xfee00000;
    ASSERT_EQ(io(vcpu, KVM_SET_SREGS, &s), 0);
    ASSERT_EQ(io(vcpu, KVM_RUN, 0ul), 0);
    ASSERT_EQ(r->exit_reason, uint32_t(KVM_EXIT_IO));
    kvm_lapic_state lapic;
    ASSERT_EQ(io(vcpu, KVM_GET_LAPIC, &lapic), 0);
    uint32_t lvtt;
    std::memcpy(&lvtt, lapic.regs + 0x320, 4);
    EXPECT_EQ(lvtt & 0xff, 0x40u);
    EXPECT_EQ(lvtt & 0x60000, bit ? 0x40000u : 0u) << "CPUID.1:ECX[24] = " << bit;
  }
}

TEST_P(TscDeadline, TimerFiresAndRearms) {
  ASSERT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER), 1);
  GuestMem mem(0x8000);
  std::memcpy(mem.ptr + 0x1000, k_guest.data(), k_guest.size());
  int vm = create_vm();
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  ASSERT_EQ(set_region(vm, 0, 0, 0, mem.size, mem.uaddr()), 0);
  int vcpu = create_vcpu(vm, 0);
  kvm_run* run = map_run(vcpu);
  // What a client does with the capability: CPUID.1:ECX[24] on.
  ASSERT_NO_FATAL_FAILURE(set_cpuid_tsc_deadline(vcpu, true));
  start_real_mode_at_0x1000(vcpu);
  kvm_sregs s;
  ASSERT_EQ(io(vcpu, KVM_GET_SREGS, &s), 0);
  s.gs.base = 0xfee00000;
  ASSERT_EQ(io(vcpu, KVM_SET_SREGS, &s), 0);

  for (uint16_t want = 1; want <= 3; ++want) {
    long r;
    do {
      r = io(vcpu, KVM_RUN, 0ul);
    } while (r == -EINTR);
    ASSERT_EQ(r, 0);
    ASSERT_EQ(run->exit_reason, uint32_t(KVM_EXIT_IO)) << "tick " << want;
    EXPECT_EQ(run->io.port, 0x11);
    uint16_t v = 0;
    std::memcpy(&v, reinterpret_cast<uint8_t*>(run) + run->io.data_offset, 2);
    EXPECT_EQ(v, want);
  }
  // The ISR has not re-armed yet (OUT comes first): firing cleared the MSR.
  MsrsBuf m{};
  m.nmsrs = 1;
  m.e[0].index = 0x6e0;
  ASSERT_EQ(io(vcpu, k_GET_MSRS, &m), 1);
  EXPECT_EQ(m.e[0].data, 0u);
  // Host-initiated write and read back (QEMU's migration of the MSR): a
  // deadline far in the guest's future (relative to its TSC, MSR 0x10, so
  // the test does not depend on how long the host has been up), not fired.
  MsrsBuf t{};
  t.nmsrs = 1;
  t.e[0].index = 0x10;
  ASSERT_EQ(io(vcpu, k_GET_MSRS, &t), 1);
  const uint64_t deadline = t.e[0].data + (uint64_t(1) << 44);
  m.e[0].data = deadline;
  ASSERT_EQ(io(vcpu, k_SET_MSRS, &m), 1);
  m.e[0].data = 0;
  ASSERT_EQ(io(vcpu, k_GET_MSRS, &m), 1);
  EXPECT_EQ(m.e[0].data, deadline);
  prove("KVM_CAP_TSC_DEADLINE_TIMER");
}

}  // namespace abitest

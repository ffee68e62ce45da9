// x87 error reporting with CR0.NE = 0 through the real ABI (SDM vol. 1, 8.7
// and appendix D.2): a waiting x87 instruction (FWAIT) finds an unmasked
// exception pending (1/0 with FCW.ZM clear).
//  - CR0.NE = 1: #MF, vector 16 (both backends).
//  - CR0.NE = 0 without an in-kernel irqchip: #MF as well (Linux KVM on VMX
//    keeps the hardware CR0.NE set, so its guests always get #MF).
//  - CR0.NE = 0 with the in-kernel PIC: a PC's FERR# -> IRQ 13 (slave PIC
//    input 5): the CPU freezes at FWAIT until the interrupt; the handler
//    clears the exception (FNCLEX) and FWAIT then runs, or the handler writes
//    port 0xF0, which asserts IGNNE#, and FWAIT runs with the exception still
//    pending. Linux KVM delivers #MF here instead: docs/abi-differences.md.
#include "abi.h"

namespace abitest {
namespace {

// Real mode, code at 0x1000 (assembled from this source with GNU as --32 / .code16):
//   cli; ds = ss = 0; sp = 0x7000
//   IVT[0x75] = irq13; IVT[0x10] = mf
//   master PIC ICW1-4 0x11/0x20/0x04/0x01, mask 0xfb; slave 0x11/0x70/0x02/0x01, mask 0xdf
//   sti; fninit; fldcw [cw = 0x037b]; fld1; fldz; fdivp st(1), st
//   fw (0x1057): fwait
//   out 0x10 <- [0x6000] handler runs; out 0x12 <- [0x6004] IP it interrupted;
//   out 0x14 <- FSW after the wait; hlt
//   irq13: [0x6008] = 13; jmp handler      mf: [0x6008] = 16
//   handler: [0x6004] = interrupted IP; inc [0x6000]; fnstsw [0x6002];
//     if [0x6006] == 0: fnclex, else: out 0xf0, al
//     EOI slave and master (out 0xa0/0x20 <- 0x20); iret
const std::vector<uint8_t> k_ferr_guest = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0xd4, 0x01, 0x67, 0x10, 0xc7, 0x06,
    0xd6, 0x01, 0x00, 0x00, 0xc7, 0x06, 0x40, 0x00, 0x6f, 0x10, 0xc7, 0x06, 0x42, 0x00, 0x00, 0x00, 0xb0, 0x11,
    0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21, 0xb0, 0xfb, 0xe6, 0x21,
    0xb0, 0x11, 0xe6, 0xa0, 0xb0, 0x70, 0xe6, 0xa1, 0xb0, 0x02, 0xe6, 0xa1, 0xb0, 0x01, 0xe6, 0xa1, 0xb0, 0xdf,
    0xe6, 0xa1, 0xfb, 0xdb, 0xe3, 0xd9, 0x2e, 0x9d, 0x10, 0xd9, 0xe8, 0xd9, 0xee, 0xde, 0xf9, 0x9b, 0xa1, 0x00,
    0x60, 0xe7, 0x10, 0xa1, 0x04, 0x60, 0xe7, 0x12, 0xdf, 0xe0, 0xe7, 0x14, 0xf4, 0xc7, 0x06, 0x08, 0x60, 0x0d,
    0x00, 0xeb, 0x06, 0xc7, 0x06, 0x08, 0x60, 0x10, 0x00, 0x55, 0x89, 0xe5, 0x8b, 0x46, 0x02, 0xa3, 0x04, 0x60,
    0xff, 0x06, 0x00, 0x60, 0xdd, 0x3e, 0x02, 0x60, 0x83, 0x3e, 0x06, 0x60, 0x00, 0x75, 0x04, 0xdb, 0xe2, 0xeb,
    0x04, 0xb0, 0x00, 0xe6, 0xf0, 0xb0, 0x20, 0xe6, 0xa0, 0xe6, 0x20, 0x5d, 0xcf, 0x7b, 0x03};
constexpr uint16_t k_fwait_ip = 0x1057;
constexpr uint16_t k_fsw_es = 0x80, k_fsw_ze = 0x04;

class Ferr : public Abi {
 protected:
  struct Result {
    uint16_t runs = 0, ip = 0, fsw_after = 0;
    bool saw_f0 = false;
    bool done = false;
    bool host_cannot = false;  // "linux": that host's KVM cannot run the guest
  };
  // RAM 0-0x8000; `irqchip`: KVM_CREATE_IRQCHIP; `ne`: CR0.NE; `ignne`: the
  // handler writes port 0xF0 instead of FNCLEX.
  Result run_guest(bool irqchip, bool ne, bool ignne) {
    m_mem = std::make_unique<GuestMem>(0x8000);
    uint8_t* ram = m_mem->ptr;
    std::memcpy(ram + 0x1000, k_ferr_guest.data(), k_ferr_guest.size());
    ram[0x6006] = ignne ? 1 : 0;
    int vm = create_vm();
    if (irqchip) {
      EXPECT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
    }
    EXPECT_EQ(set_region(vm, 0, 0, 0, 0x8000, m_mem->uaddr()), 0);
    int vcpu = create_vcpu(vm, 0);
    kvm_run* run = map_run(vcpu);
    start_real_mode_at_0x1000(vcpu);
    kvm_sregs s;
    EXPECT_EQ(io(vcpu, KVM_GET_SREGS, &s), 0);
    s.cr0 = ne ? (s.cr0 | 0x20) : (s.cr0 & ~0x20ull);
    EXPECT_EQ(io(vcpu, KVM_SET_SREGS, &s), 0);
    Result r;
    for (int exits = 0; exits < 200 && !r.done; ++exits) {
      long rc = io(vcpu, KVM_RUN, 0ul);
      if (rc == -EINTR) continue;
      EXPECT_EQ(rc, 0);
      if (rc != 0) break;
      if (on_linux() && run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
        // A nested or software KVM that emulates real mode cannot emulate x87
        // (suberror 1): the expectations are about the guest, not that host.
        r.host_cannot = true;
        break;
      }
      if (run->exit_reason != KVM_EXIT_IO) {
        ADD_FAILURE() << "exit " << run->exit_reason << " suberror " << run->internal.suberror << " rip "
                      << std::hex << run->internal.data[0];
        break;
      }
      if (run->io.direction != KVM_EXIT_IO_OUT) continue;  // no IN in this guest
      uint16_t v = 0;
      std::memcpy(&v, reinterpret_cast<uint8_t*>(run) + run->io.data_offset, run->io.size);
      switch (run->io.port) {
        case 0x10: r.runs = v; break;
        case 0x12: r.ip = v; break;
        case 0x14:  // the last report (HLT would sleep with an in-kernel irqchip)
          r.fsw_after = v;
          r.done = true;
          break;
        case 0xf0: r.saw_f0 = true; break;
        default: break;  // PIC programming and EOIs without an in-kernel PIC
      }
    }
    return r;
  }
  uint8_t* ram() { return m_mem->ptr; }
  uint16_t ram16(uint32_t a) { return uint16_t(ram()[a] | ram()[a + 1] << 8); }
  std::unique_ptr<GuestMem> m_mem;
};
ABI_SUITE(Ferr);

TEST_P(Ferr, NeSetGivesMf) {
  Result r = run_guest(true, true, false);
  if (r.host_cannot) GTEST_SKIP() << "this host's KVM cannot run the real-mode x87 guest";
  ASSERT_TRUE(r.done);
  EXPECT_EQ(r.runs, 1);
  EXPECT_EQ(ram16(0x6008), 16);       // through IVT[0x10]
  EXPECT_EQ(r.ip, k_fwait_ip);        // a fault: FWAIT is the return address
  EXPECT_EQ(ram16(0x6002) & (k_fsw_es | k_fsw_ze), k_fsw_es | k_fsw_ze);
  EXPECT_EQ(r.fsw_after & k_fsw_es, 0);
}

TEST_P(Ferr, NeClearWithoutIrqchipGivesMf) {
  Result r = run_guest(false, false, false);
  if (r.host_cannot) GTEST_SKIP() << "this host's KVM cannot run the real-mode x87 guest";
  ASSERT_TRUE(r.done);
  EXPECT_EQ(r.runs, 1);
  EXPECT_EQ(ram16(0x6008), 16);
  EXPECT_EQ(r.ip, k_fwait_ip);
  EXPECT_EQ(r.fsw_after & k_fsw_es, 0);
}

TEST_P(Ferr, NeClearRaisesIrq13AndFreezesAtFwait) {
  ANYKVM_ONLY("Linux KVM (VMX) keeps CR0.NE set in hardware and delivers #MF (docs/abi-differences.md)");
  Result r = run_guest(true, false, false);
  ASSERT_TRUE(r.done);
  EXPECT_EQ(r.runs, 1);               // one interrupt per FERR# assertion
  EXPECT_EQ(ram16(0x6008), 13);       // through IVT[0x75]: slave PIC input 5
  EXPECT_EQ(r.ip, k_fwait_ip);        // taken while frozen at FWAIT
  EXPECT_EQ(ram16(0x6002) & (k_fsw_es | k_fsw_ze), k_fsw_es | k_fsw_ze);
  EXPECT_EQ(r.fsw_after & k_fsw_es, 0);  // FNCLEX in the handler, then FWAIT ran
  EXPECT_FALSE(r.saw_f0);
}

TEST_P(Ferr, PortF0AssertsIgnne) {
  ANYKVM_ONLY("Linux KVM (VMX) keeps CR0.NE set in hardware and delivers #MF (docs/abi-differences.md)");
  Result r = run_guest(true, false, true);
  ASSERT_TRUE(r.done);
  EXPECT_TRUE(r.saw_f0);              // the port stays user space's
  EXPECT_EQ(r.runs, 1);
  EXPECT_EQ(ram16(0x6008), 13);
  EXPECT_EQ(r.ip, k_fwait_ip);
  // FWAIT ran under IGNNE# with the exception still pending.
  EXPECT_EQ(r.fsw_after & (k_fsw_es | k_fsw_ze), k_fsw_es | k_fsw_ze);
}

}  // namespace
}  // namespace abitest

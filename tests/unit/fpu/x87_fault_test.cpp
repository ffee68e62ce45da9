// x87 behaviour the host cannot show from user space, checked in the engine
// against the SDM: #NM for CR0.EM/CR0.TS (WAIT only with TS and MP), #MF
// delivery on the next waiting instruction when CR0.NE = 1 (and a pending
// exception left alone when NE = 0), the real-mode FNSTENV layouts (FIP/FDP
// as 20-bit linear addresses beside FOP), the protected-mode pointer fields,
// FXSAVE/FXRSTOR/LDMXCSR faults, and the KVM FPU image round trip.
#include <random>

#include "../cpu_exec/harness.h"
#include "cpu/soft/fpu/fpu.h"

namespace anykvm::test {
namespace {

constexpr uint64_t MP = 1u << 1, EM = 1u << 2, TS = 1u << 3, NE = 1u << 5;
constexpr uint64_t OSFXSR = 1u << 9;

// Real-mode guest whose IVT sends vector v to a HLT at 0x500 + v.
struct RealGuest {
  Guest g;
  explicit RealGuest(const std::vector<uint8_t>& code, uint64_t cr0_extra = 0, uint64_t cr4 = 0) {
    for (unsigned v = 0; v < 32; ++v) {
      g.w16(4 * v, uint16_t(0x500 + v));
      g.w16(4 * v + 2, 0);
      g.ram[0x500 + v] = 0xf4;
    }
    g.load(0x1000, code);
    g.real_mode(0x1000);
    cpu::SpecialRegs s = g.vcpu->get_sregs();
    s.cr0 |= cr0_extra;
    s.cr4 = cr4;
    EXPECT_TRUE(g.vcpu->set_sregs(s));
  }
  // The vector taken, or -1 if the guest reached `end` (its final HLT).
  int run(uint64_t end) {
    auto e = g.run();
    EXPECT_EQ(e.reason, cpu::ExitReason::Hlt);
    const uint64_t rip = g.regs().rip;
    if (rip == end) return -1;
    if (rip >= 0x501 && rip <= 0x520) return int(rip - 0x501);
    ADD_FAILURE() << "stopped at " << std::hex << rip;
    return -2;
  }
  uint16_t pushed_ip() const { return uint16_t(g.ram[0x7ffa] | (g.ram[0x7ffb] << 8)); }
};

TEST(X87Faults, DeviceNotAvailable) {
  const std::vector<uint8_t> fld1 = {0xd9, 0xe8, 0xf4};  // fld1; hlt
  EXPECT_EQ(RealGuest(fld1, TS).run(0x1003), 7);
  EXPECT_EQ(RealGuest(fld1, EM).run(0x1003), 7);
  EXPECT_EQ(RealGuest(fld1, MP).run(0x1003), -1);
  const std::vector<uint8_t> fnstsw = {0xdf, 0xe0, 0xf4};  // fnstsw ax (no-wait, still #NM)
  EXPECT_EQ(RealGuest(fnstsw, TS).run(0x1003), 7);
  const std::vector<uint8_t> wait = {0x9b, 0xf4};  // wait; hlt
  EXPECT_EQ(RealGuest(wait, TS).run(0x1002), -1);
  EXPECT_EQ(RealGuest(wait, EM).run(0x1002), -1);
  EXPECT_EQ(RealGuest(wait, TS | MP).run(0x1002), 7);
  const std::vector<uint8_t> fxsave = {0x0f, 0xae, 0x06, 0x00, 0x20, 0xf4};  // fxsave [0x2000]
  EXPECT_EQ(RealGuest(fxsave, TS, OSFXSR).run(0x1006), 7);
  EXPECT_EQ(RealGuest(fxsave, EM, OSFXSR).run(0x1006), 7);
  EXPECT_EQ(RealGuest(fxsave, 0, OSFXSR).run(0x1006), -1);
}

// fninit; fldcw [0x2000] (ZE unmasked); fld1; fldz; fdivp (ZE pending);
// fnstsw ax (no-wait); <next>; hlt
std::vector<uint8_t> pending_zero_divide(std::vector<uint8_t> next) {
  std::vector<uint8_t> c = {0xdb, 0xe3, 0xd9, 0x2e, 0x00, 0x20, 0xd9,
                            0xe8, 0xd9, 0xee, 0xde, 0xf9, 0xdf, 0xe0};
  for (uint8_t b : next) c.push_back(b);
  c.push_back(0xf4);
  return c;
}

TEST(X87Faults, MathFaultOnNextWaitingInstruction) {
  for (auto next :
       std::vector<std::vector<uint8_t>>{{0xd9, 0xe8} /*fld1*/, {0x9b} /*wait*/, {0xd9, 0xc9} /*fxch*/}) {
    const auto code = pending_zero_divide(next);
    RealGuest r(code, NE);
    r.g.w16(0x2000, 0x037b);
    EXPECT_EQ(r.run(0x1000 + code.size()), 16);
    EXPECT_EQ(r.pushed_ip(), 0x100e);         // the waiting instruction, not the FDIVP
    EXPECT_EQ(r.g.gpr(0) & 0xffff, 0xb084u);  // FNSTSW AX: B|ES|ZE, TOP = 6 (no pop when unmasked)
    // Without NE and without an in-kernel PIC for FERR#: #MF as well, as
    // Linux KVM (VMX) delivers it (FERR# -> IRQ 13: tests/abi/ferr_test.cpp).
    RealGuest q(code, 0);
    q.g.w16(0x2000, 0x037b);
    EXPECT_EQ(q.run(0x1000 + code.size()), 16);
    EXPECT_EQ(q.pushed_ip(), 0x100e);
  }
  // Non-waiting instructions do not fault: FNINIT clears the pending state.
  for (auto next : std::vector<std::vector<uint8_t>>{{0xdb, 0xe2, 0xd9, 0xe8} /*fnclex; fld1*/,
                                                     {0xdb, 0xe3, 0x9b} /*fninit; wait*/,
                                                     {0xd9, 0x3e, 0x10, 0x20} /*fnstcw*/}) {
    const auto code = pending_zero_divide(next);
    RealGuest r(code, NE);
    r.g.w16(0x2000, 0x037b);
    EXPECT_EQ(r.run(0x1000 + code.size()), -1);
  }
  // FLDCW that unmasks a flagged exception makes it pending.
  {
    // fninit; fld1; fldz; fdivp (masked ZE); fldcw [0x2000]; fld1; hlt
    const std::vector<uint8_t> code = {0xdb, 0xe3, 0xd9, 0xe8, 0xd9, 0xee, 0xde, 0xf9,
                                       0xd9, 0x2e, 0x00, 0x20, 0xd9, 0xe8, 0xf4};
    RealGuest r(code, NE);
    r.g.w16(0x2000, 0x037b);
    EXPECT_EQ(r.run(0x1000 + code.size()), 16);
    EXPECT_EQ(r.pushed_ip(), 0x100c);
  }
}

uint16_t rd16(const Guest& g, uint64_t a) { return uint16_t(g.ram[a] | (g.ram[a + 1] << 8)); }
uint32_t rd32(const Guest& g, uint64_t a) { return g.r32(a); }

// CS = 0x1000 (code at linear 0x10100), DS = 0x2000: the pointers need 20 bits.
TEST(X87Faults, RealModeEnvironmentLayouts) {
  Guest g;
  const std::vector<uint8_t> code = {
      0xdb, 0xe3,                    // 0100 fninit
      0xd9, 0x06, 0x10, 0x00,        // 0102 fld dword [0x10]      (FOP 0x106, FDP 0x20010)
      0xd9, 0x36, 0x40, 0x00,        // 0106 fnstenv [0x40]        (14-byte layout)
      0x66, 0xd9, 0x36, 0x60, 0x00,  // 010a o32 fnstenv [0x60]    (28-byte layout)
      0xdb, 0xe3,                    // fninit
      0xd9, 0x26, 0x40, 0x00,        // fldenv [0x40]
      0xd9, 0x36, 0x80, 0x00,        // fnstenv [0x80]
      0xf4,
  };
  std::memcpy(&g.ram[0x10100], code.data(), code.size());
  g.w16(0x20010, 0x0000);
  g.w16(0x20012, 0x3f80);  // 1.0f
  g.real_mode(0x0100);
  cpu::SpecialRegs s = g.vcpu->get_sregs();
  s.seg[1] = Guest::seg(0x1000, 0x10000, 0xffff, 0xb, false);
  s.seg[3] = Guest::seg(0x2000, 0x20000, 0xffff, 0x3, false);
  ASSERT_TRUE(g.vcpu->set_sregs(s));
  ASSERT_EQ(g.run().reason, cpu::ExitReason::Hlt);
  const uint64_t e16 = 0x20040, e32 = 0x20060, again = 0x20080;
  EXPECT_EQ(rd16(g, e16 + 0), 0x037f);
  EXPECT_EQ(rd16(g, e16 + 2), 0x3800);   // TOP = 7
  EXPECT_EQ(rd16(g, e16 + 4), 0x3fff);   // R7 valid
  EXPECT_EQ(rd16(g, e16 + 6), 0x0102);   // FIP[15:0]
  EXPECT_EQ(rd16(g, e16 + 8), 0x1106);   // FIP[19:16] << 12 | FOP
  EXPECT_EQ(rd16(g, e16 + 10), 0x0010);  // FDP[15:0]
  EXPECT_EQ(rd16(g, e16 + 12), 0x2000);  // FDP[19:16] << 12
  EXPECT_EQ(rd32(g, e32 + 12) & 0xffff, 0x0102u);
  EXPECT_EQ(rd32(g, e32 + 16), 0x00001106u);  // FIP[31:16] << 12 | FOP
  EXPECT_EQ(rd32(g, e32 + 20) & 0xffff, 0x0010u);
  EXPECT_EQ(rd32(g, e32 + 24), 0x00002000u);                                           // FDP[31:16] << 12
  for (unsigned k = 0; k < 14; ++k) EXPECT_EQ(g.ram[again + k], g.ram[e16 + k]) << k;  // FLDENV round trip
}

TEST(X87Faults, ProtectedModePointers) {
  Guest g;
  g.load(0x1000, {
                     0xdb,
                     0xe3,  // 1000 fninit
                     0x90,  // 1002 nop
                     0xd9,
                     0x05,
                     0x10,
                     0x20,
                     0x00,
                     0x00,  // 1003 fld dword [0x2010]
                     0xd9,
                     0x35,
                     0x40,
                     0x20,
                     0x00,
                     0x00,  // fnstenv [0x2040]
                     0xf4,
                 });
  g.w16(0x2012, 0x3f80);
  g.flat32(0x1000);
  ASSERT_EQ(g.run().reason, cpu::ExitReason::Hlt);
  EXPECT_EQ(g.r32(0x2040), 0xffff037fu);
  EXPECT_EQ(g.r32(0x2040 + 12), 0x1003u);
  EXPECT_EQ(g.r32(0x2040 + 16), 0x0008u | (0x105u << 16));
  EXPECT_EQ(g.r32(0x2040 + 20), 0x2010u);
  EXPECT_EQ(g.r32(0x2040 + 24), 0xffff0010u);
  // FNSTENV masked every exception.
  cpu::FpuState f = g.vcpu->get_fpu();
  EXPECT_EQ(f.fxsave[0], 0x7f);
}

TEST(X87Faults, FxsrFaults) {
  // fxsave [0x2008] (misaligned) -> #GP
  EXPECT_EQ(RealGuest({0x0f, 0xae, 0x06, 0x08, 0x20, 0xf4}, 0, OSFXSR).run(0x1006), 13);
  // fxrstor [0x2000] with a reserved MXCSR bit -> #GP
  {
    RealGuest r({0x0f, 0xae, 0x0e, 0x00, 0x20, 0xf4}, 0, OSFXSR);
    r.g.w16(0x2000 + 24 + 2, 0x0001);
    EXPECT_EQ(r.run(0x1006), 13);
  }
  // ldmxcsr [0x2000]: reserved bit -> #GP; OSFXSR = 0 -> #UD; fine otherwise.
  {
    RealGuest r({0x0f, 0xae, 0x16, 0x00, 0x20, 0xf4}, 0, OSFXSR);
    r.g.w16(0x2002, 0x0001);
    EXPECT_EQ(r.run(0x1006), 13);
  }
  EXPECT_EQ(RealGuest({0x0f, 0xae, 0x16, 0x00, 0x20, 0xf4}, 0, 0).run(0x1006), 6);
  {
    RealGuest r({0x0f, 0xae, 0x16, 0x00, 0x20, 0x0f, 0xae, 0x1e, 0x10, 0x20, 0xf4}, 0, OSFXSR);
    r.g.w16(0x2000, 0x9fc0);
    EXPECT_EQ(r.run(0x100b), -1);
    EXPECT_EQ(rd16(r.g, 0x2010), 0x9fc0);  // stmxcsr
  }
  // With CR4.OSFXSR = 0, FXSAVE stores the x87 part and MXCSR but not XMM0-7.
  for (uint64_t cr4 : {uint64_t(0), OSFXSR}) {
    RealGuest r({0x0f, 0xae, 0x06, 0x00, 0x20, 0xf4}, 0, cr4);
    std::memset(&r.g.ram[0x2000], 0xee, 512);
    cpu::FpuState f = r.g.vcpu->get_fpu();
    for (int k = 160; k < 288; ++k) f.fxsave[k] = uint8_t(k);
    ASSERT_TRUE(r.g.vcpu->set_fpu(f));
    EXPECT_EQ(r.run(0x1006), -1);
    EXPECT_EQ(rd16(r.g, 0x2000), 0x037f);
    EXPECT_EQ(r.g.r32(0x2000 + 24), 0x1f80u);
    EXPECT_EQ(r.g.ram[0x2000 + 160], cr4 ? 160 : 0xee) << cr4;
    EXPECT_EQ(r.g.ram[0x2000 + 287], cr4 ? 287 & 0xff : 0xee) << cr4;
    EXPECT_EQ(r.g.ram[0x2000 + 288], 0xee);  // XMM8-15 and the rest: untouched
    EXPECT_EQ(r.g.ram[0x2000 + 511], 0xee);
  }
  // Reserved register forms of 0F AE /0../3 -> #UD.
  EXPECT_EQ(RealGuest({0x0f, 0xae, 0xc0, 0xf4}, 0, OSFXSR).run(0x1004), 6);
  // Reserved x87 alias encodings -> #UD.
  EXPECT_EQ(RealGuest({0xd9, 0xd8, 0xf4}).run(0x1003), 6);
  EXPECT_EQ(RealGuest({0xdd, 0xc8, 0xf4}).run(0x1003), 6);
}

TEST(X87Faults, KvmImageRoundTrip) {
  std::mt19937_64 g(0x40f);
  for (int n = 0; n < 200; ++n) {
    soft::FpuUnit f;
    for (auto& r : f.st) r = {g(), uint16_t(g())};
    f.fcw = uint16_t((g() & 0x1f3f) | 0x40);
    f.fsw = uint16_t(g());
    // Canonical full tags: empty, or what the contents say.
    uint8_t abridged = uint8_t(g());
    soft::FpuUnit probe = f;
    uint8_t img[512];
    probe.ftw = 0;
    for (unsigned r = 0; r < 8; ++r)
      if (!((abridged >> r) & 1)) probe.ftw |= uint16_t(3u << (2 * r));
    soft::fpu_to_fxsave(probe, img);
    soft::FpuUnit canon;
    soft::fpu_from_fxsave(canon, img);  // tags recomputed from contents
    canon.fop = uint16_t(g() & 0x7ff);
    canon.fip = uint32_t(g());
    canon.fdp = uint32_t(g());
    canon.fcs = uint16_t(g());
    canon.fds = uint16_t(g());
    canon.mxcsr = uint32_t(g() & 0xffff);
    for (auto& x : canon.xmm) x = {g(), g()};
    uint8_t a[512], b[512];
    soft::fpu_to_fxsave(canon, a);
    soft::FpuUnit back;
    soft::fpu_from_fxsave(back, a);
    soft::fpu_to_fxsave(back, b);
    ASSERT_EQ(std::memcmp(a, b, 512), 0);
    ASSERT_EQ(std::memcmp(&canon.st, &back.st, sizeof canon.st), 0);
    ASSERT_EQ(canon.fcw, back.fcw);
    ASSERT_EQ(canon.fsw, back.fsw);
    ASSERT_EQ(canon.ftw, back.ftw);
    ASSERT_EQ(canon.fop, back.fop);
    ASSERT_EQ(canon.fip, back.fip);
    ASSERT_EQ(canon.fdp, back.fdp);
    ASSERT_EQ(canon.fcs, back.fcs);
    ASSERT_EQ(canon.fds, back.fds);
    ASSERT_EQ(canon.mxcsr, back.mxcsr);
    ASSERT_EQ(canon.xmm, back.xmm);
    ASSERT_EQ(a[4], abridged);
  }
}

// KVM_GET_FPU/KVM_SET_FPU through the backend around guest x87 code.
TEST(X87Faults, GetSetFpuAroundGuestCode) {
  Guest g;
  g.load(0x1000,
         {0xd9, 0xe8, 0xf4, 0xd9, 0x1d, 0x00, 0x20, 0x00, 0x00, 0xf4});  // fld1; hlt; fstp [0x2000]; hlt
  g.flat32(0x1000);
  ASSERT_EQ(g.run().reason, cpu::ExitReason::Hlt);
  cpu::FpuState f = g.vcpu->get_fpu();
  uint16_t fsw;
  uint64_t m;
  std::memcpy(&fsw, &f.fxsave[2], 2);
  std::memcpy(&m, &f.fxsave[32], 8);
  EXPECT_EQ(fsw, 0x3800);
  EXPECT_EQ(f.fxsave[4], 0x80);
  EXPECT_EQ(m, 0x8000000000000000ull);
  // Replace ST0 with 2.0 and let the guest store it.
  const uint16_t two = 0x4000;
  std::memcpy(&f.fxsave[40], &two, 2);
  ASSERT_TRUE(g.vcpu->set_fpu(f));
  ASSERT_EQ(g.run().reason, cpu::ExitReason::Hlt);
  EXPECT_EQ(g.r32(0x2000), 0x40000000u);
  cpu::FpuState after = g.vcpu->get_fpu();
  EXPECT_EQ(after.fxsave[4], 0x00);
}

}  // namespace
}  // namespace anykvm::test

namespace anykvm::test {
namespace {

// The engine runs the guest's x87 instructions on the host unit, on the
// client's thread: the client's own control word and sticky flags survive.
TEST(X87Faults, HostStatePreserved) {
  Guest g;
  // fninit; fldcw [0x2000]; fld1; fldz; fdivp (ZE, unmasked: pending); hlt
  g.load(0x1000, {0xdb, 0xe3, 0xd9, 0x2d, 0x00, 0x20, 0x00, 0x00, 0xd9, 0xe8, 0xd9, 0xee, 0xde, 0xf9, 0xf4});
  g.w16(0x2000, 0x0360);
  g.flat32(0x1000);
  for (bool sticky : {false, true}) {
    uint16_t cw = 0x0a7f, cw_after = 0, sw_before = 0, sw_after = 0;
    asm volatile("fninit; fldcw %0" ::"m"(cw));
    if (sticky) {
      volatile long double third = 1.0L;
      third = third / 3.0L;  // sets PE in the host FSW
      (void)third;
    }
    asm volatile("fnstsw %0" : "=m"(sw_before));
    cpu::Regs r = g.regs();
    r.rip = 0x1000;
    g.vcpu->set_regs(r);
    ASSERT_EQ(g.run().reason, cpu::ExitReason::Hlt);
    asm volatile("fnstcw %0; fnstsw %1" : "=m"(cw_after), "=m"(sw_after));
    asm volatile("fninit");
    EXPECT_EQ(cw_after, cw) << sticky;
    EXPECT_EQ(sw_after, sw_before) << sticky;
    if (sticky) {
      EXPECT_NE(sw_before & 0x20, 0);
    }
    cpu::FpuState f = g.vcpu->get_fpu();
    EXPECT_EQ(f.fxsave[2] & 0x84, 0x84);  // the guest's ES|ZE stayed in the guest
  }
}

// x87 memory operands in MMIO: every part of an m80 load is an exit completed
// on re-entry, the instruction runs once (TOP moves once), and an m80 store
// leaves as two writes carrying the result.
TEST(X87Faults, MmioOperands) {
  Guest g;
  g.load(0x1000, {
                     0xdb, 0xe3,                          // fninit
                     0xdb, 0x2d, 0x00, 0x00, 0x20, 0x00,  // fld tword [0x200000]
                     0xd8, 0xc0,                          // fadd st0, st0
                     0xdb, 0x3d, 0x10, 0x00, 0x20, 0x00,  // fstp tword [0x200010]
                     0xdd, 0x05, 0x20, 0x00, 0x20, 0x00,  // fld qword [0x200020]
                     0xdf, 0xe0,                          // fnstsw ax
                     0xf4,
                 });
  g.flat32(0x1000);
  uint8_t mmio[48] = {};
  const uint64_t one_and_half = 0xc000000000000000ull, dbl_two = 0x4000000000000000ull;
  std::memcpy(mmio, &one_and_half, 8);
  mmio[8] = 0xff;
  mmio[9] = 0x3f;
  std::memcpy(mmio + 0x20, &dbl_two, 8);
  uint8_t written[48] = {};
  int reads = 0, writes = 0;
  for (int n = 0; n < 20; ++n) {
    auto e = g.run();
    if (e.reason == cpu::ExitReason::Hlt) break;
    ASSERT_EQ(e.reason, cpu::ExitReason::Mmio);
    const uint64_t off = e.mmio.gpa - k_mmio;
    ASSERT_LE(off + e.mmio.len, sizeof mmio);
    if (e.mmio.is_write) {
      std::memcpy(written + off, e.mmio.data, e.mmio.len);
      ++writes;
    } else {
      g.vcpu->complete_mmio_read(std::span<const uint8_t>(mmio + off, e.mmio.len));
      ++reads;
    }
  }
  EXPECT_EQ(g.regs().rip, 0x1000u + 25);
  EXPECT_EQ(reads, 3);   // 8 + 2 bytes of the m80, 8 of the m64
  EXPECT_EQ(writes, 2);  // 8 + 2 bytes of the m80
  uint64_t m;
  uint16_t se;
  std::memcpy(&m, written + 0x10, 8);
  std::memcpy(&se, written + 0x18, 2);
  EXPECT_EQ(m, 0xc000000000000000ull);  // 3.0
  EXPECT_EQ(se, 0x4000);
  EXPECT_EQ(g.gpr(0) & 0xffff, 0x3800u);  // one value on the stack: TOP = 7, no flags
  cpu::FpuState f = g.vcpu->get_fpu();
  std::memcpy(&m, &f.fxsave[32], 8);
  std::memcpy(&se, &f.fxsave[40], 2);
  EXPECT_EQ(m, 0x8000000000000000ull);  // 2.0
  EXPECT_EQ(se, 0x4000);
}

}  // namespace
}  // namespace anykvm::test

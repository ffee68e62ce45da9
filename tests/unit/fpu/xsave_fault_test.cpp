// XSAVE feature-set behaviour the host cannot show from user space, checked
// in the engine against the SDM (vol. 2 XSAVE, XRSTOR, XGETBV, XSETBV; vol. 1
// 13.7-13.8) and KVM's XCR0 rules: #UD without CR4.OSXSAVE or with a 66/F3
// prefix, #NM with CR0.TS, #GP for a misaligned area, for XRSTOR header and
// MXCSR errors, for XSETBV at CPL > 0, with ECX != 0 or an invalid XCR0;
// XINUSE in XSTATE_BV; CPUID leaves 1 and 0xD; CR4.OSXSAVE gated by CPUID; and
// the KVM XSAVE-image functions.
#include <cstring>

#include "../cpu_exec/harness.h"
#include "cpu/soft/fpu/fpu.h"

namespace anykvm::test {
namespace {

constexpr uint64_t TS = 1u << 3, OSFXSR = 1u << 9, OSXSAVE = 1u << 18;
constexpr int k_none = -1;

// Real-mode guest whose IVT sends vector v to a HLT at 0x500 + v. The XSAVE
// area is at 0x2000 (64-byte aligned).
struct RealGuest {
  Guest g;
  size_t end = 0;
  RealGuest(const std::vector<uint8_t>& code, uint64_t cr0_extra, uint64_t cr4, bool cpuid = true) {
    for (unsigned v = 0; v < 32; ++v) {
      g.w16(4 * v, uint16_t(0x500 + v));
      g.w16(4 * v + 2, 0);
      g.ram[0x500 + v] = 0xf4;
    }
    std::vector<uint8_t> c = code;
    c.push_back(0xf4);
    g.load(0x1000, c);
    end = 0x1000 + c.size();
    g.real_mode(0x1000);
    if (cpuid) g.vcpu->set_cpuid(cpu::soft_supported_cpuid());
    cpu::SpecialRegs s = g.vcpu->get_sregs();
    s.cr0 |= cr0_extra;
    s.cr4 = cr4;
    EXPECT_TRUE(g.vcpu->set_sregs(s));
  }
  // The vector taken, or k_none if the guest reached its final HLT.
  int run() {
    auto e = g.run();
    EXPECT_EQ(e.reason, cpu::ExitReason::Hlt);
    const uint64_t rip = g.regs().rip;
    if (rip == end) return k_none;
    if (rip >= 0x501 && rip <= 0x520) return int(rip - 0x501);
    ADD_FAILURE() << "stopped at " << std::hex << rip;
    return -2;
  }
  uint64_t xstate_bv() const {
    uint64_t v;
    std::memcpy(&v, &g.ram[0x2000 + 512], 8);
    return v;
  }
};

std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> r;
  for (auto& p : parts) r.insert(r.end(), p.begin(), p.end());
  return r;
}
// 16-bit code: 66 B8/B9/BA imm32.
std::vector<uint8_t> mov32(uint8_t reg, uint32_t v) {
  return {0x66, uint8_t(0xb8 + reg), uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
}
constexpr uint8_t EAX = 0, ECX = 1, EDX = 2;
const std::vector<uint8_t> k_xsave = {0x0f, 0xae, 0x26, 0x00, 0x20};   // xsave [0x2000]
const std::vector<uint8_t> k_xrstor = {0x0f, 0xae, 0x2e, 0x00, 0x20};  // xrstor [0x2000]
const std::vector<uint8_t> k_xgetbv = {0x0f, 0x01, 0xd0};
const std::vector<uint8_t> k_xsetbv = {0x0f, 0x01, 0xd1};
std::vector<uint8_t> mask(uint32_t lo, uint32_t hi = 0) { return cat({mov32(EAX, lo), mov32(EDX, hi)}); }
std::vector<uint8_t> setbv(uint64_t v, uint32_t ecx = 0) {
  return cat({mov32(ECX, ecx), mask(uint32_t(v), uint32_t(v >> 32)), k_xsetbv});
}

TEST(XsaveFaults, UndefinedWithoutOsxsave) {
  for (const auto& insn : {k_xsave, k_xrstor, k_xgetbv, k_xsetbv}) {
    EXPECT_EQ(RealGuest(cat({mask(3), insn}), 0, OSFXSR).run(), 6);
    EXPECT_EQ(RealGuest(cat({mask(3), insn}), 0, OSFXSR | OSXSAVE).run(), k_none);
  }
  // NP opcodes: a 66 or F3 prefix is #UD.
  EXPECT_EQ(RealGuest(cat({{0x66}, k_xgetbv}), 0, OSXSAVE).run(), 6);
  EXPECT_EQ(RealGuest(cat({mask(1), {0xf3}, k_xsave}), 0, OSXSAVE).run(), 6);
  // Other 0F 01 /2 register forms (VMFUNC 0F 01 D4) are not implemented.
  EXPECT_EQ(RealGuest({0x0f, 0x01, 0xd4}, 0, OSXSAVE).run(), 6);
}

TEST(XsaveFaults, DeviceNotAvailableAndAlignment) {
  EXPECT_EQ(RealGuest(cat({mask(3), k_xsave}), TS, OSXSAVE).run(), 7);
  EXPECT_EQ(RealGuest(cat({mask(3), k_xrstor}), TS, OSXSAVE).run(), 7);
  EXPECT_EQ(RealGuest(cat({mov32(ECX, 0), k_xgetbv}), TS, OSXSAVE).run(), k_none) << "XGETBV ignores CR0.TS";
  const std::vector<uint8_t> misaligned = {0x0f, 0xae, 0x26, 0x20, 0x20};  // xsave [0x2020]
  EXPECT_EQ(RealGuest(cat({mask(3), misaligned}), 0, OSXSAVE).run(), 13);
  const std::vector<uint8_t> aligned = {0x0f, 0xae, 0x26, 0x40, 0x20};  // xsave [0x2040]
  EXPECT_EQ(RealGuest(cat({mask(3), aligned}), 0, OSXSAVE).run(), k_none);
}

TEST(XsaveFaults, XrstorHeaderAndMxcsr) {
  struct Case {
    unsigned offset;  // into the area
    uint64_t value;
    uint64_t xcr0;
    uint32_t rfbm;
    int vector;
  };
  const Case cases[] = {
      {512, 3, 3, 3, k_none},                 // XSTATE_BV within XCR0
      {512, 4, 3, 3, 13},                     // AVX bit: not in XCR0
      {512, 2, 1, 1, 13},                     // SSE bit with XCR0 = x87: #GP even outside RFBM
      {520, 1ull << 63, 3, 3, 13},            // XCOMP_BV[63]: no compacted form
      {520, 1, 3, 3, 13},                     // XCOMP_BV nonzero
      {528, 1, 3, 3, 13},                     // header bytes 23:16
      {536, ~0ull, 3, 3, k_none},             // header bytes 63:24 are not checked
      {24, 0x10000 | 0x1f80, 3, 2, 13},       // MXCSR reserved bit, loaded with RFBM[1]
      {24, 0x10000 | 0x1f80, 3, 1, k_none},   // not loaded without RFBM[1]
      {24, 0x10000 | 0x1f80, 1, 3, k_none},   // RFBM = XCR0 & EDX:EAX = 1
  };
  for (const Case& c : cases) {
    RealGuest r(cat({setbv(c.xcr0), mask(c.rfbm), k_xrstor}), 0, OSFXSR | OSXSAVE);
    std::memset(&r.g.ram[0x2000], 0, 576);
    r.g.ram[0x2000] = 0x7f;  // FCW 037FH
    r.g.ram[0x2001] = 0x03;
    const uint32_t mx = 0x1f80;
    std::memcpy(&r.g.ram[0x2000 + 24], &mx, 4);
    std::memcpy(&r.g.ram[0x2000 + c.offset], &c.value, c.offset == 24 ? 4 : 8);
    EXPECT_EQ(r.run(), c.vector) << "offset " << c.offset << " value " << c.value << " rfbm " << c.rfbm;
  }
}

TEST(XsaveFaults, XgetbvXsetbv) {
  // XGETBV: XCR0 in EDX:EAX; ECX = 1 needs CPUID 0xD.1 EAX[2] (not reported).
  RealGuest a(cat({mov32(EAX, ~0u), mov32(EDX, ~0u), mov32(ECX, 0), k_xgetbv}), 0, OSXSAVE);
  EXPECT_EQ(a.run(), k_none);
  EXPECT_EQ(a.g.gpr(0), 1u);
  EXPECT_EQ(a.g.gpr(2), 0u);
  EXPECT_EQ(RealGuest(cat({mov32(ECX, 1), k_xgetbv}), 0, OSXSAVE).run(), 13);
  EXPECT_EQ(RealGuest(cat({mov32(ECX, 2), k_xgetbv}), 0, OSXSAVE).run(), 13);
  // XSETBV: ECX = 0 only; bit 0 set; only bits the guest's CPUID 0xD.0 allows.
  struct Case {
    uint64_t value;
    uint32_t ecx;
    bool cpuid;
    int vector;
  };
  const Case cases[] = {
      {3, 0, true, k_none}, {1, 0, true, k_none}, {3, 1, true, 13},    {0, 0, true, 13},
      {2, 0, true, 13},     {7, 0, true, 13},     {5, 0, true, 13},    {1ull << 32 | 3, 0, true, 13},
      {3, 0, false, 13},    {1, 0, false, k_none},
  };
  for (const Case& c : cases) {
    RealGuest r(cat({setbv(c.value, c.ecx), mov32(ECX, 0), k_xgetbv}), 0, OSXSAVE, c.cpuid);
    EXPECT_EQ(r.run(), c.vector) << "value " << c.value << " ecx " << c.ecx << " cpuid " << c.cpuid;
    const uint64_t want = c.vector == k_none ? c.value : 1;
    EXPECT_EQ(r.g.vcpu->get_fpu().xcr0, want);
    if (c.vector == k_none) EXPECT_EQ(r.g.gpr(0), want);
  }
}

// Flat 32-bit protected mode without an IDT: any exception escalates to a
// triple fault (shutdown) with EIP left on the faulting instruction.
TEST(XsaveFaults, XsetbvNeedsCpl0) {
  for (uint8_t cpl : {0, 3}) {
    Guest g;
    const std::vector<uint8_t> code = {0x31, 0xc9, 0xb8, 0x03, 0, 0, 0, 0x31, 0xd2, 0x0f, 0x01, 0xd1, 0xf4};
    g.load(0x1000, code);
    g.flat32(0x1000);
    g.vcpu->set_cpuid(cpu::soft_supported_cpuid());
    cpu::SpecialRegs s = g.vcpu->get_sregs();
    s.cr4 = OSXSAVE;
    s.idt = {0, 0};
    if (cpl == 3) {
      s.seg[1].dpl = s.seg[2].dpl = 3;
      s.seg[1].selector |= 3;
      s.seg[2].selector |= 3;
    }
    ASSERT_TRUE(g.vcpu->set_sregs(s));
    auto e = g.run();
    if (cpl == 0) {
      EXPECT_EQ(e.reason, cpu::ExitReason::Hlt);
      EXPECT_EQ(g.vcpu->get_fpu().xcr0, 3u);
    } else {
      EXPECT_EQ(e.reason, cpu::ExitReason::Shutdown);
      EXPECT_EQ(g.regs().rip, 0x1009u) << "faulted on XSETBV";
      EXPECT_EQ(g.vcpu->get_fpu().xcr0, 1u);
    }
  }
}

TEST(XsaveFaults, XstateBvIsXinuse) {
  // Fresh state: both components initial -> 0. After FLD1 x87 is in use;
  // after LDMXCSR with a non-default value SSE is too. Bits outside RFBM keep
  // their memory value.
  const std::vector<uint8_t> fld1 = {0xd9, 0xe8};
  const std::vector<uint8_t> ldmxcsr = {0x0f, 0xae, 0x16, 0x00, 0x30};  // ldmxcsr [0x3000]
  struct Case {
    std::vector<uint8_t> pre;
    uint32_t rfbm;
    uint64_t want;
  };
  const Case cases[] = {{{}, 3, 0xf0},
                        {fld1, 3, 0xf1},
                        {ldmxcsr, 3, 0xf2},
                        {cat({fld1, ldmxcsr}), 3, 0xf3},
                        {cat({fld1, ldmxcsr}), 1, 0xf1},
                        {cat({fld1, ldmxcsr}), 2, 0xf2},
                        // FNINIT leaves R7 = 1.0: not the initial configuration (13.6).
                        {cat({fld1, {0xdb, 0xe3}}), 3, 0xf1},
                        {{0xdb, 0xe3}, 3, 0xf0}};
  for (const Case& c : cases) {
    RealGuest r(cat({setbv(3), c.pre, mask(c.rfbm), k_xsave}), 0, OSFXSR | OSXSAVE);
    const uint64_t pre = 0xf0;
    std::memcpy(&r.g.ram[0x2000 + 512], &pre, 8);
    const uint32_t mx = 0x1fc0;
    std::memcpy(&r.g.ram[0x3000], &mx, 4);
    EXPECT_EQ(r.run(), k_none);
    EXPECT_EQ(r.xstate_bv(), c.want) << "rfbm " << c.rfbm;
  }
  // XRSTOR from memory with XSTATE_BV = 3 keeps the components in use even
  // with initial values (13.8.3); an initialisation clears them.
  for (uint64_t bv : {0ull, 1ull, 2ull, 3ull}) {
    RealGuest r(cat({setbv(3), mask(3), k_xrstor, {0x0f, 0xae, 0x26, 0x00, 0x24}}), 0, OSFXSR | OSXSAVE);
    std::memset(&r.g.ram[0x2000], 0, 576);
    r.g.ram[0x2000] = 0x7f;
    r.g.ram[0x2001] = 0x03;
    const uint32_t mx = 0x1f80;
    std::memcpy(&r.g.ram[0x2000 + 24], &mx, 4);
    std::memcpy(&r.g.ram[0x2000 + 512], &bv, 8);
    EXPECT_EQ(r.run(), k_none);
    uint64_t out;
    std::memcpy(&out, &r.g.ram[0x2400 + 512], 8);
    EXPECT_EQ(out, bv);
    EXPECT_EQ(r.g.vcpu->get_fpu().xstate_bv, bv);
  }
}

TEST(XsaveFaults, Cpuid) {
  // cpuid for leaf 1, then 0xD.0 and 0xD.1, results stored at 0x3000.
  auto leaf = [](uint32_t fn, uint32_t idx, uint16_t at) {
    std::vector<uint8_t> v = cat({mov32(EAX, fn), mov32(ECX, idx), {0x0f, 0xa2}});
    for (uint8_t r : {0, 3, 1, 2}) {  // eax ebx ecx edx -> at + 0/4/8/12
      const uint16_t a = uint16_t(at + 4 * (r == 0 ? 0 : r == 3 ? 1 : r == 1 ? 2 : 3));
      v.insert(v.end(), {0x66, 0x89, uint8_t(0x06 | (r << 3)), uint8_t(a), uint8_t(a >> 8)});
    }
    return v;
  };
  for (bool osxsave : {false, true}) {
    RealGuest r(cat({leaf(1, 0, 0x3000), leaf(0xd, 0, 0x3010), leaf(0xd, 1, 0x3020), leaf(0, 0, 0x3030)}), 0,
                osxsave ? OSXSAVE : 0);
    EXPECT_EQ(r.run(), k_none);
    EXPECT_TRUE(r.g.r32(0x3008) & (1u << 26)) << "XSAVE";
    EXPECT_EQ(bool(r.g.r32(0x3008) & (1u << 27)), osxsave) << "OSXSAVE follows CR4";
    EXPECT_EQ(r.g.r32(0x3010), 3u);
    EXPECT_EQ(r.g.r32(0x3014), 576u);
    EXPECT_EQ(r.g.r32(0x3018), 576u);
    EXPECT_EQ(r.g.r32(0x301c), 0u);
    for (unsigned k = 0; k < 16; k += 4) EXPECT_EQ(r.g.r32(0x3020 + k), 0u) << "no XSAVEOPT/C/S, XGETBV1";
    EXPECT_GE(r.g.r32(0x3030), 0xdu) << "max basic leaf";
  }
}

TEST(XsaveFaults, Cr4OsxsaveNeedsCpuidXsave) {
  // mov eax, cr4; or eax, OSXSAVE; mov cr4, eax
  const std::vector<uint8_t> code = {0x0f, 0x20, 0xe0, 0x66, 0x0d, 0x00, 0x00, 0x04, 0x00, 0x0f, 0x22, 0xe0};
  EXPECT_EQ(RealGuest(code, 0, 0, true).run(), k_none);
  EXPECT_EQ(RealGuest(code, 0, 0, false).run(), 13);
}

TEST(XsaveImage, SetXsaveInitialisesAbsentComponents) {
  soft::FpuUnit f;
  f.fcw = 0x027f;
  f.st[3].mantissa = 42;
  f.xmm[9][1] = 7;
  f.mxcsr = 0x1fc0;
  uint8_t img[512];
  soft::fpu_to_fxsave(f, img);
  for (uint64_t bv = 0; bv < 4; ++bv) {
    soft::FpuUnit g;
    g.fsw = 0x3800;
    g.xmm[0][0] = 5;
    soft::fpu_set_xsave(g, img, bv);
    EXPECT_EQ(g.fcw, (bv & 1) ? 0x027f : 0x037f);
    EXPECT_EQ(g.st[3].mantissa, (bv & 1) ? 42u : 0u);
    EXPECT_EQ(g.fsw, 0u);
    EXPECT_EQ(g.xmm[9][1], (bv & 2) ? 7u : 0u);
    EXPECT_EQ(g.xmm[0][0], 0u);
    EXPECT_EQ(g.mxcsr, (bv & 2) ? 0x1fc0u : 0x1f80u);
    EXPECT_EQ(soft::fpu_xinuse(g), bv);
  }
}

}  // namespace
}  // namespace anykvm::test

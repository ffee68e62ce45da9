// SIMD exceptions and availability checks: unmasked MXCSR exceptions against
// the host (SIGFPE gives the trapping state: destination unchanged, flags
// set), #XM vs #UD by CR4.OSXMMEXCPT, #NM with CR0.TS, #UD with CR0.EM and
// with CR4.OSFXSR clear (SSE only), and #GP(0) for misaligned 16-byte
// operands of the aligned forms (SDM vol. 1, 11.5 and 11.6.9; vol. 2 tables
// of SIMD exception classes).
#include "simd_harness.h"

namespace anykvm::simdtest {
namespace {

std::vector<Form> unmasked(std::initializer_list<std::vector<uint8_t>> ops, Lane lane) {
  std::vector<Form> f;
  for (const auto& op : ops) {
    Form x{op, lane};
    x.unmask = true;
    f.push_back(x);
  }
  return f;
}

TEST(SimdFault, UnmaskedExceptionsMatchHost) {
  auto f = unmasked({{0x0f, 0x58}, {0x0f, 0x59}, {0x0f, 0x5e}, {0x0f, 0x51}, {0x0f, 0x5d}, {0xf3, 0x0f, 0x58},
                     {0xf3, 0x0f, 0x5e}, {0x0f, 0x2f}, {0x0f, 0x2e}, {0x0f, 0x5a}, {0x66, 0x0f, 0x5b},
                     {0xf3, 0x0f, 0x2d}, {0xf3, 0x0f, 0x2c}, {0xf2, 0x0f, 0x7c}, {0xf2, 0x0f, 0x7d},
                     {0xf2, 0x0f, 0xd0}, {0x0f, 0x5c}, {0xf3, 0x0f, 0x59}, {0x0f, 0x52}, {0x0f, 0x5f}},
                    Lane::F32);
  auto d = unmasked({{0x66, 0x0f, 0x58}, {0x66, 0x0f, 0x59}, {0x66, 0x0f, 0x5e}, {0xf2, 0x0f, 0x51},
                     {0x66, 0x0f, 0x2f}, {0x66, 0x0f, 0x5a}, {0xf2, 0x0f, 0x5a}, {0xf2, 0x0f, 0x2d},
                     {0x66, 0x0f, 0xe6}, {0x66, 0x0f, 0xd0}, {0xf2, 0x0f, 0x5c}, {0xf2, 0x0f, 0x5e},
                     {0x66, 0x0f, 0x7d}, {0x66, 0x0f, 0x2d}},
                    Lane::F64);
  f.insert(f.end(), d.begin(), d.end());
  Form cmp{{0x0f, 0xc2}, Lane::F32, Imm::Pred};
  cmp.unmask = true;
  f.push_back(cmp);
  run_forms("unmasked", f, false, true, 300);
}

struct Probe {
  Ctx in;
  Probe() {
    std::memset(&in, 0, sizeof in);
    in.gpr[7] = k_mem;
    in.mxcsr = 0x1f80;
  }
};

int vector_of(std::vector<uint8_t> code, const Ctx& in, uint64_t cr0, uint64_t cr4) {
  Harness& h = harness();
  h.cr0 = cr0;
  h.cr4 = cr4;
  Result r = h.engine(code, in);
  h.cr0 = 0x11 | soft::cr0::NE;
  h.cr4 = soft::cr4::OSFXSR | soft::cr4::OSXMMEXCPT;
  return r.vector;
}

constexpr uint64_t k_cr0 = 0x11 | soft::cr0::NE;
constexpr uint64_t k_cr4 = soft::cr4::OSFXSR | soft::cr4::OSXMMEXCPT;

TEST(SimdFault, XmVersusUd) {
  Probe p;
  p.in.xmm[0][0] = 0x3f800000;  // 1.0f / 0.0f
  p.in.mxcsr = 0x1f80 & ~(1u << 9);  // ZM clear
  std::vector<uint8_t> divss = {0xf3, 0x0f, 0x5e, 0xc1};
  EXPECT_EQ(vector_of(divss, p.in, k_cr0, k_cr4), 19);
  EXPECT_EQ(harness().cpu().fpu.xmm[0][0], 0x3f800000u);  // destination unchanged
  EXPECT_EQ(harness().cpu().fpu.mxcsr & 0x3f, 0x4u);      // ZE
  EXPECT_EQ(vector_of(divss, p.in, k_cr0, soft::cr4::OSFXSR), 6);
  p.in.mxcsr = 0x1f80;
  EXPECT_EQ(vector_of(divss, p.in, k_cr0, soft::cr4::OSFXSR), -1);
  EXPECT_EQ(harness().cpu().fpu.xmm[0][0], 0x7f800000u);
}

TEST(SimdFault, UnmaskedUnderflowOnExactTinyResult) {
  Probe p;
  p.in.xmm[0][0] = 0x00800000;  // min normal * 0.5 = exact denormal
  p.in.xmm[1][0] = 0x3f000000;
  std::vector<uint8_t> mulss = {0xf3, 0x0f, 0x59, 0xc1};
  EXPECT_EQ(vector_of(mulss, p.in, k_cr0, k_cr4), -1);  // masked: no UE (exact)
  EXPECT_EQ(harness().cpu().fpu.mxcsr & 0x3f, 0u);
  p.in.mxcsr = 0x1f80 & ~(1u << 11);  // UM clear
  EXPECT_EQ(vector_of(mulss, p.in, k_cr0, k_cr4), 19);
  EXPECT_EQ(harness().cpu().fpu.mxcsr & 0x10, 0x10u);
  if (harness().native_ok()) EXPECT_TRUE(same(mulss, p.in, false, false));
}

TEST(SimdFault, NmWithTs) {
  Probe p;
  for (auto code : std::vector<std::vector<uint8_t>>{{0x0f, 0x58, 0xc1}, {0x0f, 0xfc, 0xc1}, {0x0f, 0x77},
                                                      {0x66, 0x0f, 0xfc, 0xc1}, {0x0f, 0x2a, 0xc1}}) {
    EXPECT_EQ(vector_of(code, p.in, k_cr0 | soft::cr0::TS, k_cr4), 7) << hex(code);
    EXPECT_EQ(vector_of(code, p.in, k_cr0 | soft::cr0::EM, k_cr4), 6) << hex(code);
  }
}

TEST(SimdFault, OsfxsrClearIsUdForSseOnly) {
  Probe p;
  EXPECT_EQ(vector_of({0x0f, 0x58, 0xc1}, p.in, k_cr0, 0), 6);
  EXPECT_EQ(vector_of({0x66, 0x0f, 0xfc, 0xc1}, p.in, k_cr0, 0), 6);
  EXPECT_EQ(vector_of({0x0f, 0x10, 0xc1}, p.in, k_cr0, 0), 6);
  EXPECT_EQ(vector_of({0x0f, 0xfc, 0xc1}, p.in, k_cr0, 0), -1);  // MMX paddb
}

TEST(SimdFault, MisalignedOperands) {
  Probe p;
  // [edi+1]: ModRM 47 disp8 01; [edi+4]: 47 04.
  for (auto code : std::vector<std::vector<uint8_t>>{{0x0f, 0x28, 0x47, 0x01},
                                                      {0x0f, 0x29, 0x47, 0x08},
                                                      {0x0f, 0x58, 0x47, 0x04},
                                                      {0x66, 0x0f, 0x6f, 0x47, 0x01},
                                                      {0x66, 0x0f, 0xfc, 0x47, 0x02},
                                                      {0x0f, 0x2b, 0x47, 0x04},
                                                      {0x66, 0x0f, 0x70, 0x47, 0x04, 0x1b}}) {
    EXPECT_EQ(vector_of(code, p.in, k_cr0, k_cr4), 13) << hex(code);
  }
  // Unaligned forms and scalar/64-bit operands do not fault; compare with the host.
  for (auto code : std::vector<std::vector<uint8_t>>{{0x0f, 0x10, 0x47, 0x01},
                                                      {0xf3, 0x0f, 0x6f, 0x47, 0x03},
                                                      {0xf2, 0x0f, 0xf0, 0x47, 0x05},
                                                      {0xf3, 0x0f, 0x58, 0x47, 0x01},
                                                      {0x0f, 0x12, 0x47, 0x01},
                                                      {0x0f, 0x5a, 0x47, 0x04},
                                                      {0x0f, 0xfc, 0x47, 0x01},
                                                      {0x66, 0x0f, 0xd6, 0x47, 0x03}}) {
    EXPECT_EQ(vector_of(code, p.in, k_cr0, k_cr4), -1) << hex(code);
    if (harness().native_ok()) EXPECT_TRUE(same(code, p.in, true, false));
  }
}

}  // namespace
}  // namespace anykvm::simdtest

namespace anykvm::simdtest {
namespace {

TEST(SimdFault, PendingX87ExceptionIsMfForMmxOnly) {
  Probe p;
  Harness& h = harness();
  h.prepare({0x0f, 0xfc, 0xc1}, p.in);  // paddb mm0, mm1
  h.cpu().fpu.fsw = 0x80 | 0x01;        // ES + IE pending
  h.run();
  EXPECT_EQ(h.collect({0x0f, 0xfc, 0xc1}, p.in).vector, 16);
  h.prepare({0x66, 0x0f, 0xfc, 0xc1}, p.in);  // paddb xmm0, xmm1: no x87 check
  h.cpu().fpu.fsw = 0x81;
  h.run();
  EXPECT_EQ(h.collect({0x66, 0x0f, 0xfc, 0xc1}, p.in).vector, -1);
  h.cpu().fpu.fsw = 0;
}

// 16-byte operands in MMIO: two 8-byte exits each, completed on re-entry, and
// the instruction commits once (SDM-independent: DESIGN.md "MMIO is an exit").
TEST(SimdMmio, LoadComputeStore) {
  Probe p;
  Harness& h = harness();
  constexpr uint32_t k_mmio = 0x100000;  // above the harness RAM
  p.in.gpr[7] = k_mmio;
  p.in.xmm[0][0] = 0x3f8000003f800000ull;  // 1.0f x4
  p.in.xmm[0][1] = 0x3f8000003f800000ull;
  std::vector<uint8_t> code = {0x0f, 0x58, 0x07,  // addps xmm0, [edi]
                               0x0f, 0x11, 0x47, 0x10};  // movups [edi+16], xmm0
  h.prepare(code, p.in);
  const uint64_t halves[2] = {0x4000000040400000ull, 0x40a0000040800000ull};  // 3,2 / 4,5
  for (int k = 0; k < 2; ++k) {
    cpu::VcpuExit e = h.run();
    ASSERT_EQ(int(e.reason), int(cpu::ExitReason::Mmio)) << k;
    EXPECT_FALSE(e.mmio.is_write);
    EXPECT_EQ(e.mmio.gpa, k_mmio + 8u * k);
    EXPECT_EQ(e.mmio.len, 8u);
    h.vcpu().complete_mmio_read(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&halves[k]), 8));
  }
  const uint64_t want[2] = {0x4040000040800000ull, 0x40c0000040a00000ull};  // 4,3 / 5,6
  for (int k = 0; k < 2; ++k) {
    cpu::VcpuExit e = h.run();
    ASSERT_EQ(int(e.reason), int(cpu::ExitReason::Mmio)) << k;
    EXPECT_TRUE(e.mmio.is_write);
    EXPECT_EQ(e.mmio.gpa, k_mmio + 16 + 8u * k);
    uint64_t v;
    std::memcpy(&v, e.mmio.data, 8);
    EXPECT_EQ(v, want[k]);
  }
  ASSERT_EQ(int(h.run().reason), int(cpu::ExitReason::Hlt));
  EXPECT_EQ(h.cpu().fpu.xmm[0][0], want[0]);
  EXPECT_EQ(h.cpu().fpu.xmm[0][1], want[1]);
  EXPECT_EQ(h.cpu().fpu.mxcsr, 0x1f80u);
}

}  // namespace
}  // namespace anykvm::simdtest

namespace anykvm::simdtest {
namespace {

uint32_t host_mxcsr() {
  uint32_t v;
  asm volatile("stmxcsr %0" : "=m"(v));
  return v;
}

// The guest's MXCSR never reaches the host's (issue 4, deliver 4), whether the
// instruction completes or traps.
TEST(SimdIsolation, HostMxcsrUntouched) {
  Probe p;
  uint32_t before = host_mxcsr();
  p.in.xmm[0][0] = 0x3f800000;
  for (uint32_t m : {0x7fc0u, 0x9f80u, 0x0000u}) {
    p.in.mxcsr = m;
    harness().engine({0xf3, 0x0f, 0x5e, 0xc1}, p.in);  // divss by zero
    harness().engine({0x0f, 0x2f, 0xc1}, p.in);        // comiss
    EXPECT_EQ(host_mxcsr(), before) << std::hex << m;
  }
}

}  // namespace
}  // namespace anykvm::simdtest
